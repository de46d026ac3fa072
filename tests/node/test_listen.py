"""The DICOM node end to end: C-ECHO, callers refused, series filed and queued after the quiet
period, a worker diagnosing it and sending SR + heatmap SC to the destination, and a job whose
worker was killed redone without duplicate results."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from medsight.node import load_node_config
from medsight.node.serve import Node
from medsight.node.worker import Worker
from medsight.store.audit import export_rows
from medsight.store.jobs import JobQueue

from .conftest import SCANNER, send_files, wait_for, write_node_config, write_series

SR_CLASS, SC_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"


@contextmanager
def running(path: Path, **kwargs):
    node = Node(load_node_config(path), **kwargs).start()
    try:
        yield node
    finally:
        node.stop()


def _echo(port: int, calling: str):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSIGHT")
    if not assoc.is_established:
        return None
    try:
        return assoc.send_c_echo().Status
    finally:
        assoc.release()


def _statuses(node) -> list[str]:
    return [job.status for status in ("received", "queued", "running", "done", "failed")
            for job in JobQueue(node.db).with_status(status)]


def test_echo_callers_and_quiet_series_become_queued_jobs(tmp_path, fake_run, destination, caplog):
    caplog.set_level(logging.INFO)
    path = write_node_config(tmp_path, fake_run, destination, quiet_seconds=1.5)
    ct, mr = write_series(tmp_path / "ct"), write_series(tmp_path / "mr", n=2, modality="MR")
    first, mr_first = pydicom.dcmread(ct[0]), pydicom.dcmread(mr[0])
    received = tmp_path / "received"
    with running(path) as node:
        assert _echo(node.port, SCANNER) == 0x0000
        assert _echo(node.port, "INTRUDER") is None  # rejected at association
        assert send_files(node.port, ct, calling="INTRUDER") == []
        assert send_files(node.port, ct) == [0, 0, 0]
        assert send_files(node.port, mr) == [0, 0]
        queue = JobQueue(node.db)
        wait_for(lambda: queue.with_status("queued"), 30, "the CT job to be queued")
        wait_for(lambda: not (received / mr_first.StudyInstanceUID).exists(), 30, "the unrouted MR files to go")
        [job] = queue.with_status("queued")  # one job: only the CT series has a route
        assert (job.caller, job.run, job.attempts) == (SCANNER, str(fake_run), 0)
        assert _statuses(node) == ["queued"]
    assert (job.study_uid, job.series_uid) == (first.StudyInstanceUID, first.SeriesInstanceUID)
    folder = received / first.StudyInstanceUID / first.SeriesInstanceUID
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in ct)
    assert first.SeriesInstanceUID in caplog.text
    assert "PAT-SECRET-42" not in caplog.text and "SYNTHETIC" not in caplog.text


def test_a_worker_sends_results_and_a_killed_job_is_redone_without_duplicates(
        tmp_path, node_run, destination, caplog):
    caplog.set_level(logging.INFO)
    path = write_node_config(tmp_path, node_run, destination, quiet_seconds=1)
    ct = write_series(tmp_path / "ct")
    source = pydicom.dcmread(ct[0])
    with running(path) as node:
        assert send_files(node.port, ct) == [0, 0, 0]
        queue = JobQueue(node.db)
        wait_for(lambda: queue.with_status("queued"), 20, "the job to be queued")
        # A worker claims the job, sends its results and is killed before it marks the job done.
        doomed = Worker(node.cfg.model_copy(update={"lease_seconds": 0.5}), node.db, name="doomed")
        job = doomed.queue.claim(doomed.name)
        first = doomed.process(job)
        assert queue.get(job.id).status == "running"
        # The lease expires; a live worker takes the job again and finishes it.
        survivor = Worker(node.cfg, node.db, doomed.models, name="survivor")
        wait_for(lambda: survivor.run_one(), 10, "the expired job to be claimed again")
        done = queue.get(job.id)
        assert (done.status, done.attempts, done.worker) == ("done", 2, "survivor")
        audit = list(export_rows(node.db))
    sent = destination.received
    assert len(sent) == 4  # SR + SC, twice
    uids = {ds.SOPInstanceUID for ds in sent}
    assert uids == {str(ds.SOPInstanceUID) for ds in first} and len(uids) == 2  # the retry overwrote
    assert {ds.SOPClassUID for ds in sent} == {SR_CLASS, SC_CLASS}
    assert {ds.StudyInstanceUID for ds in sent} == {source.StudyInstanceUID}
    sr = next(ds for ds in sent if ds.SOPClassUID == SR_CLASS)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    sent_refs = {item.ReferencedSOPInstanceUID for item in evidence.ReferencedSOPSequence}
    assert sent_refs == {pydicom.dcmread(p).SOPInstanceUID for p in ct}
    assert [row["caller"] for row in audit] == [SCANNER, SCANNER] and audit[0]["run"] == str(node_run.resolve())
    assert not (tmp_path / "received" / source.StudyInstanceUID).exists()  # deleted after the job
    assert "PAT-SECRET-42" not in caplog.text


def test_the_node_runs_jobs_by_itself(tmp_path, node_run, destination):
    path = write_node_config(tmp_path, node_run, destination, quiet_seconds=1, workers=1, keep_received=True)
    ct = write_series(tmp_path / "ct", n=2)
    with running(path, poll_seconds=0.2) as node:
        assert send_files(node.port, ct) == [0, 0]
        queue = JobQueue(node.db)
        wait_for(lambda: queue.with_status("done"), 60, "the node to finish the job")
    assert sorted(ds.SOPClassUID for ds in destination.received) == [SC_CLASS, SR_CLASS]
    source = pydicom.dcmread(ct[0])
    assert len(list((tmp_path / "received" / source.StudyInstanceUID).rglob("*.dcm"))) == 2  # kept
