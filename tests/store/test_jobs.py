"""The durable job queue: priority order, exclusive claims, leases that expire, no job done twice."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta

import pytest

from medsight.store import open_database
from medsight.store.jobs import JobQueue, LeaseLost, add_feedback, feedback_rows, utcnow


def test_claim_takes_the_highest_priority_then_the_oldest(db):
    queue = JobQueue(db)
    low, high_old, high_new = (queue.add("1.1", "r", priority=p) for p in (0, 5, 5))
    waiting = queue.add("1.2", "r", priority=9, queued=False)  # received, not yet queued
    assert [queue.claim("w").id for _ in range(3)] == [high_old, high_new, low]
    assert queue.claim("w") is None
    queue.release(waiting)
    job = queue.claim("w")
    assert (job.id, job.status, job.worker, job.attempts) == (waiting, "running", "w", 1)


def test_finish_marks_done_or_failed_with_the_error(db):
    queue = JobQueue(db)
    a, b = queue.add("1.1", "r"), queue.add("1.2", "r")
    queue.finish(queue.claim("w"))
    queue.finish(queue.claim("w"), error="cannot read series 1.2.3")
    assert queue.get(a).status == "done"
    failed = queue.get(b)
    assert (failed.status, failed.error) == ("failed", "cannot read series 1.2.3")
    assert queue.counts() == {"done": 1, "failed": 1}


def test_two_claimers_in_threads_never_get_the_same_job(db):
    queue = JobQueue(db)
    ids = {queue.add(f"1.{i}", "r", priority=i % 3) for i in range(40)}
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def work(name: str) -> None:
        mine = JobQueue(db)
        while (job := mine.claim(name)) is not None:
            got[name].append(job.id)
            mine.finish(job)

    threads = [threading.Thread(target=work, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    claimed = [i for ids_ in got.values() for i in ids_]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert queue.counts() == {"done": 40}


def _claim_all(url: str, name: str, results) -> None:
    queue = JobQueue(open_database(url))
    while (job := queue.claim(name)) is not None:
        results.put(job.id)
        queue.finish(job)


def test_two_claimers_in_processes_never_get_the_same_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queue = JobQueue(open_database(url))
    ids = {queue.add(f"1.{i}", "r") for i in range(30)}
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_claim_all, args=(url, f"p{i}", results)) for i in range(2)]
    for w in workers:
        w.start()
    claimed = [results.get(timeout=120) for _ in ids]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(claimed) == sorted(ids)
    assert queue.counts() == {"done": 30}


def test_an_expired_lease_is_requeued_and_the_stale_worker_cannot_finish(db):
    queue = JobQueue(db, lease_seconds=60)
    job_id = queue.add("1.9", "r")
    stale = queue.claim("dead-worker")
    later = utcnow() + timedelta(seconds=61)  # the dead worker's lease has run out
    with pytest.raises(LeaseLost):
        queue.finish(stale, now=later)  # even before anyone else took it
    retry = queue.claim("live-worker", now=later)
    assert (retry.id, retry.worker, retry.attempts) == (job_id, "live-worker", 2)
    with pytest.raises(LeaseLost):
        queue.finish(stale, now=later)  # the dead worker came back: still not its job
    queue.finish(retry, now=later)
    assert queue.get(job_id).status == "done" and queue.get(job_id).worker == "live-worker"


def test_the_same_worker_cannot_finish_an_earlier_attempt(db):
    queue = JobQueue(db, lease_seconds=60)
    queue.add("1.9", "r")
    first = queue.claim("w")
    later = utcnow() + timedelta(seconds=61)
    second = queue.claim("w", now=later)
    with pytest.raises(LeaseLost):
        queue.finish(first, now=later)
    queue.finish(second, now=later)


def test_renew_keeps_a_long_job_and_a_job_out_of_attempts_fails(db):
    queue = JobQueue(db, lease_seconds=60)
    job_id = queue.add("1.9", "r", max_attempts=2)
    job = queue.renew(queue.claim("w"), now=utcnow() + timedelta(seconds=50))
    assert queue.requeue_expired(utcnow() + timedelta(seconds=90)) == 0  # renewed: still held
    t = utcnow() + timedelta(seconds=200)
    assert queue.claim("w2", now=t).attempts == 2
    assert queue.requeue_expired(t + timedelta(seconds=61)) == 1
    failed = queue.get(job_id)
    assert failed.status == "failed" and "lease expired" in failed.error
    with pytest.raises(LeaseLost):
        queue.renew(job, now=t)


def test_feedback_is_kept_per_job_or_study(db):
    queue = JobQueue(db)
    job = queue.add("1.2.840.1", "r")
    add_feedback(db, "reader-1", True, job_id=job)
    add_feedback(db, "reader-2", False, study_uid="1.2.840.1", comment="missed the nodule in the left lobe")
    rows = feedback_rows(db)
    assert [(r["reader"], r["accepted"], r["job_id"]) for r in rows] == [("reader-1", True, job),
                                                                          ("reader-2", False, None)]
    assert rows[1]["comment"].startswith("missed")
