"""A durable job queue in the database, and readers' feedback on what the jobs produced.

A job goes ``received`` -> ``queued`` -> ``running`` -> ``done`` or ``failed``. ``claim(worker)``
takes the queued job of highest priority (oldest first) for one worker, atomically
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the transaction holds the write lock, and
the update is conditional on the job still being queued), and gives it a lease. A worker that
dies leaves its lease to expire: the job is then queued again (or failed after
``max_attempts``). Only the current lease holder can finish a job, so none is done twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from sqlalchemy import and_, func, insert, select, update

from medsight.errors import MedsightError
from medsight.store.db import Database
from medsight.store.tables import feedback, jobs
from medsight.store.worklist import result_columns

LEASE_SECONDS = 300.0


def utcnow() -> datetime:
    """Naive UTC: what the DateTime columns hold on every backend."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Job:
    id: int
    study_uid: str
    run: str
    priority: int
    status: str
    attempts: int
    worker: str | None
    lease_expires: datetime | None
    error: str | None = None
    series_uid: str | None = None
    caller: str | None = None


class LeaseLost(MedsightError):
    """A worker tried to finish a job it no longer holds (its lease expired and was requeued)."""


def _clip(text: str | None, size: int) -> str | None:
    return str(text)[:size] if text else None


def _job(row) -> Job:
    return Job(row.id, row.study_uid, row.run, row.priority, row.status, row.attempts, row.worker,
               row.lease_expires, row.error, row.series_uid, row.caller)


class JobQueue:
    def __init__(self, db: Database, lease_seconds: float = LEASE_SECONDS):
        self.db, self.lease_seconds = db, lease_seconds

    def add(self, study_uid: str, run: str, priority: int = 0, queued: bool = True, max_attempts: int = 3,
            series_uid: str | None = None, caller: str | None = None, modality: str | None = None,
            patient_name: str | None = None, patient_id: str | None = None) -> int:
        """A new job; ``queued=False`` records it as ``received`` until :meth:`release`.

        ``modality`` and the patient's name and ID are for the worklist (which shows the patient
        only when the service is told to); nothing logs them."""
        with self.db.transaction() as c:
            return c.execute(insert(jobs).values(
                study_uid=study_uid, series_uid=series_uid, caller=caller, run=run, priority=priority,
                status="queued" if queued else "received", attempts=0, max_attempts=max_attempts,
                received_at=utcnow(), modality=_clip(modality, 16), patient_name=patient_name or None,
                patient_id=_clip(patient_id, 64))).inserted_primary_key[0]

    def with_status(self, status: str) -> list[Job]:
        """Every job in ``status``, oldest first (e.g. the ``received`` ones a restarted node still holds)."""
        with self.db.transaction() as c:
            rows = c.execute(select(jobs).where(jobs.c.status == status).order_by(jobs.c.id)).all()
        return [_job(row) for row in rows]

    def unfinished(self, series_uid: str) -> int:
        """How many jobs on ``series_uid`` are not yet done or failed."""
        with self.db.transaction() as c:
            return c.execute(select(func.count()).select_from(jobs).where(
                jobs.c.series_uid == series_uid, jobs.c.status.in_(("received", "queued", "running")))).scalar_one()

    def release(self, job_id: int) -> None:
        """A received job is ready: queue it."""
        with self.db.transaction() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "received").values(status="queued"))

    def get(self, job_id: int) -> Job:
        with self.db.transaction() as c:
            row = c.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            raise MedsightError(f"no job {job_id}")
        return _job(row)

    def requeue_expired(self, now: datetime | None = None) -> int:
        """Jobs whose lease ran out: queued again, or failed once they used ``max_attempts``."""
        now = now or utcnow()
        expired = and_(jobs.c.status == "running", jobs.c.lease_expires < now)
        with self.db.transaction() as c:
            failed = c.execute(update(jobs).where(expired, jobs.c.attempts >= jobs.c.max_attempts).values(
                status="failed", finished_at=now, worker=None, lease_expires=None,
                error="the worker's lease expired on the last attempt")).rowcount
            requeued = c.execute(update(jobs).where(expired).values(
                status="queued", worker=None, lease_expires=None, error="the worker's lease expired")).rowcount
        return failed + requeued

    def claim(self, worker: str, now: datetime | None = None) -> Job | None:
        """The queued job of highest priority (oldest first), now running for ``worker``; None if none."""
        now = now or utcnow()
        self.requeue_expired(now)
        order = (jobs.c.priority.desc(), jobs.c.received_at, jobs.c.id)
        with self.db.transaction() as c:
            while True:
                candidate = c.execute(select(jobs.c.id).where(jobs.c.status == "queued").order_by(*order)
                                      .limit(1).with_for_update(skip_locked=True)).scalar_one_or_none()
                if candidate is None:
                    return None
                taken = c.execute(update(jobs).where(jobs.c.id == candidate, jobs.c.status == "queued").values(
                    status="running", worker=worker, attempts=jobs.c.attempts + 1, started_at=now,
                    lease_expires=now + timedelta(seconds=self.lease_seconds), error=None)).rowcount
                if taken == 1:
                    return _job(c.execute(select(jobs).where(jobs.c.id == candidate)).one())

    def _holding(self, job: Job, now: datetime):
        return and_(jobs.c.id == job.id, jobs.c.status == "running", jobs.c.worker == job.worker,
                    jobs.c.attempts == job.attempts, jobs.c.lease_expires > now)

    def renew(self, job: Job, now: datetime | None = None) -> Job:
        """Extend the lease of a job still held (a long job calls this as it goes)."""
        now = now or utcnow()
        expires = now + timedelta(seconds=self.lease_seconds)
        with self.db.transaction() as c:
            if c.execute(update(jobs).where(self._holding(job, now)).values(lease_expires=expires)).rowcount != 1:
                raise LeaseLost(f"job {job.id}: {job.worker} no longer holds it")
        return Job(**{**job.__dict__, "lease_expires": expires})

    def finish(self, job: Job, error: str | None = None, now: datetime | None = None,
               result: Mapping[str, Any] | None = None) -> None:
        """``done`` (or ``failed`` with ``error``); raises :class:`LeaseLost` for a stale worker.

        ``result``: the finding's summary for the worklist (:func:`medsight.store.worklist.summary`
        makes it from a prediction record); its triage priority is stored with it."""
        now = now or utcnow()
        values = {"status": "failed" if error else "done", "finished_at": now, "lease_expires": None,
                  "error": error}
        if result is not None:
            values.update(result_columns(result))
        with self.db.transaction() as c:
            if c.execute(update(jobs).where(self._holding(job, now)).values(**values)).rowcount != 1:
                raise LeaseLost(f"job {job.id}: {job.worker} no longer holds it (attempt {job.attempts})")

    def counts(self) -> dict[str, int]:
        with self.db.transaction() as c:
            rows = c.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        return {status: n for status, n in rows}


def add_feedback(db: Database, reader: str, accepted: bool, job_id: int | None = None,
                 study_uid: str | None = None, comment: str | None = None) -> int:
    """A reader's verdict on a result: accepted or rejected, with an optional comment."""
    if job_id is None and study_uid is None:
        raise MedsightError("feedback names a job or a study")
    with db.transaction() as c:
        return c.execute(insert(feedback).values(job_id=job_id, study_uid=study_uid, reader=reader,
                                                 accepted=accepted, comment=comment,
                                                 time=utcnow())).inserted_primary_key[0]


def feedback_rows(db: Database) -> list[dict]:
    with db.transaction() as c:
        return [dict(r._mapping) for r in c.execute(select(feedback).order_by(feedback.c.id))]
