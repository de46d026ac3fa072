"""The node's worker: claim a job, diagnose its series as ``medsight pacs run`` does, send the
results to the destination (C-STORE or STOW-RS), write the audit row, mark the job done (or
failed) with its finding for the triage worklist, and tidy up.

While a job runs, a heartbeat renews its lease, so a job longer than the lease keeps its worker;
a killed worker's heartbeat stops with it, and the job returns to the queue when the lease expires.

Result UIDs are derived from the job's input (the series files' digest) and the run, so a job
redone after its worker was killed sends the same objects again: the destination overwrites
them instead of holding duplicates. A destination that cannot be reached leaves the job to its
lease: it returns to the queue when the lease expires and is tried again (up to its attempts).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsight.errors import MedsightError, _one_printable_line
from medsight.inference.audit import AuditTrail, input_sha256
from medsight.inference.load import LoadedRun, load_run
from medsight.node.config import NodeConfig
from medsight.node.dimse import DestinationError, deliver
from medsight.node.receive import remove_series, series_folder
from medsight.pacs.run import diagnose_series
from medsight.store.db import Database
from medsight.store.jobs import Job, JobQueue, LeaseLost
from medsight.store.worklist import summary

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a job produced: the result objects, the prediction record, its worklist summary, the
    input's digest and the seconds the diagnosis took."""

    objects: list[Any]
    record: dict[str, Any]
    summary: dict[str, Any]
    digest: str | None
    seconds: float


class Heartbeat:
    """While a job runs, renew its lease every third of the lease (so a job longer than the lease
    is not taken by another worker); stops when the job ends or the lease was lost."""

    def __init__(self, queue: JobQueue, job: Job):
        self.queue, self.job = queue, job
        self.interval = max(queue.lease_seconds / 3.0, 0.05)
        self.stopped = threading.Event()
        self.renewals = 0
        self.thread = threading.Thread(target=self._beat, name=f"medsight-lease-{job.id}", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.job = self.queue.renew(self.job)
                self.renewals += 1
            except LeaseLost as exc:
                log.warning("%s; its results will carry the same UIDs when redone", exc)
                return
            except MedsightError as exc:  # e.g. the database briefly unavailable: try again next beat
                log.error("job %d: cannot renew the lease: %s", self.job.id, exc)
            except Exception as exc:  # noqa: BLE001 (a heartbeat must never kill the worker)
                log.error("job %d: cannot renew the lease: %s", self.job.id, _one_printable_line(str(exc)))

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join()


class Models:
    """Runs loaded once per process and shared by its workers (one lock per run: one job at a time)."""

    def __init__(self, db: Database):
        self.db, self.lock = db, threading.Lock()
        self.loaded: dict[str, tuple[LoadedRun, AuditTrail, threading.Lock]] = {}

    def get(self, run: str) -> tuple[LoadedRun, AuditTrail, threading.Lock]:
        with self.lock:
            if run not in self.loaded:
                loaded = load_run(Path(run))
                self.loaded[run] = (loaded, AuditTrail(self.db, loaded), threading.Lock())
            return self.loaded[run]


def worker_name(index: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


class Worker:
    def __init__(self, cfg: NodeConfig, db: Database, models: Models | None = None, name: str | None = None):
        self.cfg, self.db = cfg, db
        self.queue = JobQueue(db, lease_seconds=cfg.lease_seconds)
        self.models = models or Models(db)
        self.name = name or worker_name()

    def results(self, job: Job) -> Outcome:
        """Diagnose the job's series: the result objects, the prediction record and its worklist summary."""
        folder = series_folder(self.cfg.storage_dir, job.study_uid, job.series_uid or "")
        paths = sorted(folder.glob("*.dcm"))
        if not paths:
            raise MedsightError(f"series {job.series_uid}: no received instances in {folder}")
        run, _, lock = self.models.get(job.run)
        digest = input_sha256(folder)
        seed = f"medsight-node:{digest}:{Path(job.run).resolve()}"
        start = time.perf_counter()
        with lock:
            found, objects, record = diagnose_series(run, paths, Path(job.run).name, uid_seed=seed)
        seconds = time.perf_counter() - start
        brief = summary(record, run.class_names, n_images=found["n_images"],
                        referenced_sop_instance_uid=str(found["referenced_sop_instance_uid"]))
        return Outcome(objects, record, brief, digest, seconds)

    def process(self, job: Job) -> list[Any]:
        """Everything a job does before it is marked done: diagnose, send, audit. The sent objects."""
        return self.process_outcome(job).objects

    def process_outcome(self, job: Job) -> Outcome:
        """:meth:`process`, with the whole outcome (the worklist summary too)."""
        outcome = self.results(job)
        deliver(self.cfg.ae_title, self.cfg.destination, outcome.objects, self.cfg.tls)
        _, trail, _ = self.models.get(job.run)
        trail.prediction(job.caller or "dicom", outcome.digest, outcome.record, outcome.seconds)
        return outcome

    def run_one(self) -> Job | None:
        """Claim and do one job; the job (as claimed), or None when the queue is empty."""
        job = self.queue.claim(self.name)
        if job is None:
            return None
        log.info("job %d (series %s, attempt %d) on %s", job.id, job.series_uid, job.attempts, self.name)
        try:
            with Heartbeat(self.queue, job):
                outcome = self.process_outcome(job)
        except DestinationError as exc:
            log.error("job %d: %s; it returns to the queue when its lease expires", job.id, exc)
            return job
        except Exception as exc:  # a bad series or run must not stop the worker
            error = _one_printable_line(str(exc) or type(exc).__name__)
            log.error("job %d failed: %s", job.id, error, exc_info=not isinstance(exc, MedsightError))
            self._finish(job, error)
            return job
        if self._finish(job, None, outcome.summary):
            log.info("job %d done: %d result object(s) sent", job.id, len(outcome.objects))
            self._tidy(job)
        return job

    def _finish(self, job: Job, error: str | None, result: dict[str, Any] | None = None) -> bool:
        try:
            self.queue.finish(job, error, result=result)
            return True
        except LeaseLost as exc:  # another worker has it now; its results carry the same UIDs
            log.warning("%s", exc)
            return False

    def _tidy(self, job: Job) -> None:
        """Delete the received series once no job on it is left (unless ``keep_received``)."""
        if self.cfg.keep_received or not job.series_uid or self.queue.unfinished(job.series_uid):
            return
        remove_series(self.cfg.storage_dir, job.study_uid, job.series_uid)

    def loop(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Work until ``stop`` is set, polling the queue when it is empty."""
        while not stop.is_set():
            try:
                if self.run_one() is None:
                    stop.wait(poll_seconds)
            except MedsightError as exc:  # e.g. the database is briefly unavailable
                log.error("worker %s: %s", self.name, exc)
                stop.wait(poll_seconds)
