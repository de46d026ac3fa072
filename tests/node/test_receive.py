"""Quiet-series bookkeeping without the network: received jobs, release after the quiet period,
series with no route, and a restarted node releasing what it had received."""

from __future__ import annotations

import pydicom
from pydicom.uid import generate_uid

from medsight.node.config import load_node_config
from medsight.node.receive import Receiver
from medsight.store import open_database
from medsight.store.jobs import JobQueue

from .conftest import write_node_config


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _instance(series: str, modality: str = "CT") -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3", series, modality
    return ds


def test_jobs_are_received_then_queued_once_the_series_is_quiet(tmp_path, fake_run, destination):
    cfg = load_node_config(write_node_config(tmp_path, fake_run, destination, quiet_seconds=5,
                                             keep_received=False))
    db = open_database(cfg.db)
    try:
        queue, clock = JobQueue(db), Clock()
        receiver = Receiver(cfg, queue, clock)
        ct, mr = generate_uid(), generate_uid()
        receiver.note(_instance(ct), "SCANNER")
        (cfg.storage_dir / "1.2.3" / mr).mkdir(parents=True)
        receiver.note(_instance(mr, "MR"), "SCANNER")  # no route: no job
        clock.now += 4
        receiver.note(_instance(ct), "SCANNER")  # a new instance restarts the quiet period
        clock.now += 4
        assert receiver.sweep() == 1  # only the MR series is quiet: recorded, no job, files gone
        assert not (cfg.storage_dir / "1.2.3" / mr).exists()
        [job] = queue.with_status("received")
        assert (job.series_uid, job.caller, job.run) == (ct, "SCANNER", str(fake_run))
        # The node stops here; a new one finds the received job and releases it after the quiet period.
        again = Receiver(cfg, queue, clock)
        assert again.sweep() == 0 and queue.with_status("queued") == []
        clock.now += 5
        assert again.sweep() == 1
        assert [j.id for j in queue.with_status("queued")] == [job.id] and queue.with_status("received") == []
    finally:
        db.close()
