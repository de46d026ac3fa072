"""A job longer than its lease keeps its worker: the heartbeat renews the lease while it runs."""

from __future__ import annotations

import time

from medsight.node import load_node_config
from medsight.node.worker import Heartbeat, Outcome, Worker
from medsight.store import open_database
from medsight.store.jobs import JobQueue

from .conftest import write_node_config

LEASE = 0.6


def test_a_job_longer_than_its_lease_is_not_taken_by_another_worker(tmp_path, fake_run, destination, monkeypatch):
    cfg = load_node_config(write_node_config(tmp_path, fake_run, destination, lease_seconds=LEASE))
    db = open_database(cfg.db)
    try:
        queue = JobQueue(db, lease_seconds=LEASE)
        job_id = queue.add("1.2.3", str(fake_run), series_uid="1.2.3.4", modality="CT")
        slow, other = Worker(cfg, db, name="slow"), Worker(cfg, db, name="other")
        stolen = []

        def long_job(job):  # five leases long; the other worker keeps trying to take it
            deadline = time.monotonic() + 5 * LEASE
            while time.monotonic() < deadline:
                stolen.append(other.queue.claim(other.name))
                time.sleep(0.1)
            return Outcome([], {}, {"label": "nodule", "probability": 0.7, "uncertainty": 0.1,
                                    "out_of_distribution": False}, None, 5 * LEASE)

        monkeypatch.setattr(slow, "process_outcome", long_job)
        assert slow.run_one().id == job_id
        assert len(stolen) > 10 and not any(stolen)
        done = queue.get(job_id)
        assert (done.status, done.attempts, done.worker) == ("done", 1, "slow")
    finally:
        db.close()


def test_without_a_heartbeat_the_same_job_would_have_been_taken(tmp_path, fake_run, destination):
    """The control: the lease alone expires during such a job, and the heartbeat stops with the job."""
    cfg = load_node_config(write_node_config(tmp_path, fake_run, destination, lease_seconds=LEASE))
    db = open_database(cfg.db)
    try:
        queue = JobQueue(db, lease_seconds=LEASE)
        queue.add("1.2.3", str(fake_run), series_uid="1.2.3.4")
        job = queue.claim("slow")
        with Heartbeat(queue, job) as beat:
            time.sleep(3 * LEASE)
            assert queue.claim("other") is None
        assert beat.renewals >= 3 and not beat.thread.is_alive()
        time.sleep(LEASE + 0.2)  # the job "hangs" after its heartbeat stopped: its lease runs out
        taken = queue.claim("other")
        assert taken is not None and taken.id == job.id and taken.attempts == 2
    finally:
        db.close()
