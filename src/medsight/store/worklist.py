"""The triage worklist: the node's jobs, most urgent first, with the readers' last verdicts.

A job's result summary (label, probability of the critical class, uncertainty, the input
guard's out-of-distribution flag) is stored on its row when it is done (``JobQueue.finish``),
with its triage priority (:func:`triage_priority`, the ``urgency`` column). :func:`worklist_page`
reads a page of rows sorted by that priority (highest first; jobs without a result after every
scored one; then the longest waiting first), filtered by status, modality and arrival time, with
a keyset cursor for the next page, so paging stays correct while new jobs arrive.

Patient name and ID are on the rows (the node records them) but a page carries them only when
asked (``with_patient``: the service's ``--show-patient`` setting). Nothing here logs a row.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import and_, func, or_, select

from medsight.errors import MedsightError
from medsight.store.audit import canonical_json, iso_utc
from medsight.store.db import Database
from medsight.store.tables import JOB_STATUSES, feedback, jobs

UNCERTAINTY_WEIGHT = 0.5  # full uncertainty (u = 1) halves the distance from p to 1
OOD_WEIGHT = 0.5  # so does an input the guard flagged as unlike the training images
UNSCORED = -1.0  # the sort key of a job without a result (below every priority in [0, 1])
MAX_LIMIT = 500


class WorklistError(MedsightError):
    """A bad worklist request: an unknown status, a malformed time or cursor."""


def triage_priority(probability: float | None, uncertainty: float | None = None,
                    out_of_distribution: bool | None = False) -> float | None:
    """How urgently a result should be read, in [0, 1] (higher first).

    The model's probability of the critical class ``p``, raised by its uncertainty ``u`` (the
    normalised predictive entropy in [0, 1]) and by an input the guard flagged as out of
    distribution, each taken as an independent reason to look early (a noisy OR)::

        priority = 1 - (1 - p) * (1 - 0.5 * u) * (1 - 0.5 * ood)

    So a confident, in-distribution result keeps exactly ``p``; the priority never falls below
    ``p``; a fully uncertain result or a flagged input each halve the distance to 1 (a flagged
    "no finding" at p = 0.02 becomes 0.51, above a confident p = 0.5). None without a probability
    (a job still pending, or failed).
    """
    if probability is None:
        return None
    p = min(max(float(probability), 0.0), 1.0)
    u = min(max(float(uncertainty or 0.0), 0.0), 1.0)
    flagged = 1.0 if out_of_distribution else 0.0
    return round(1.0 - (1.0 - p) * (1.0 - UNCERTAINTY_WEIGHT * u) * (1.0 - OOD_WEIGHT * flagged), 6)


def critical_probability(probabilities: Mapping[str, float], class_names: Sequence[str]) -> float:
    """P(critical class) = 1 - P(first class): the first class is the normal one (for a binary
    model, the probability of its positive class), as ``pacs run`` picks a series' worst slice."""
    return round(1.0 - float(probabilities[class_names[0]]), 6)


def summary(record: Mapping[str, Any], class_names: Sequence[str], **extra: Any) -> dict[str, Any]:
    """The worklist's summary of one prediction record (``predict_image``'s), plus ``extra``."""
    probabilities = record.get("probabilities") or {}
    return {
        "label": record.get("label"),
        "probability": critical_probability(probabilities, class_names) if probabilities else None,
        "probabilities": dict(probabilities),
        "uncertainty": record.get("uncertainty"),
        "needs_review": record.get("needs_review"),
        "out_of_distribution": bool(record.get("out_of_distribution")),
        "modality": record.get("modality"),
        **extra,
    }


def result_columns(result: Mapping[str, Any]) -> dict[str, Any]:
    """The ``jobs`` columns a finished job's summary fills (the modality only where none was recorded)."""
    values = {
        "label": result.get("label"),
        "probability": result.get("probability"),
        "uncertainty": result.get("uncertainty"),
        "out_of_distribution": bool(result.get("out_of_distribution")),
        "urgency": triage_priority(result.get("probability"), result.get("uncertainty"),
                                   result.get("out_of_distribution")),
        "result": canonical_json(dict(result)),
    }
    if result.get("modality"):
        values["modality"] = func.coalesce(jobs.c.modality, str(result["modality"])[:16])
    return values


def parse_time(text: str, what: str, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise) as naive UTC, what the columns hold.
    A bare date with ``end_of_day`` means the end of that day (``until=2025-01-31`` includes the 31st)."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WorklistError(f"{what} {text!r}: not an ISO 8601 date or time (e.g. 2025-01-31T09:00)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    if end_of_day and len(text) == 10:  # YYYY-MM-DD
        moment += timedelta(days=1)
    return moment


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    modality: str | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in JOB_STATUSES]
        if unknown:
            raise WorklistError(f"status {unknown[0]!r}: not one of {', '.join(JOB_STATUSES)}")

    def clauses(self) -> list:
        found = []
        if self.statuses:
            found.append(jobs.c.status.in_(self.statuses))
        if self.modality:
            found.append(func.upper(jobs.c.modality) == self.modality.strip().upper())
        if self.since is not None:
            found.append(jobs.c.received_at >= self.since)
        if self.until is not None:
            found.append(jobs.c.received_at < self.until)
        return found


SORT_KEY = func.coalesce(jobs.c.urgency, UNSCORED)


def _encode_cursor(key: float, received_at: datetime, job_id: int) -> str:
    raw = json.dumps([key, received_at.isoformat(), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, received, job_id = json.loads(raw)
        return float(key), datetime.fromisoformat(received), int(job_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise WorklistError("cursor: not a cursor this service gave (take it from the last page's 'next')") from None


def _after(cursor: str):
    """Rows after the cursor's in the worklist's order (priority desc, arrival asc, id asc)."""
    key, received, job_id = _decode_cursor(cursor)
    return or_(SORT_KEY < key,
               and_(SORT_KEY == key, or_(jobs.c.received_at > received,
                                         and_(jobs.c.received_at == received, jobs.c.id > job_id))))


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds() / 60.0, 2)


def item(row: Any, verdict: dict | None = None, with_patient: bool = False) -> dict[str, Any]:
    """One worklist row as the API returns it."""
    result = json.loads(row.result) if row.result else {}
    entry = {
        "job_id": row.id,
        "study_uid": row.study_uid,
        "series_uid": row.series_uid,
        "model": Path(row.run).name,
        "status": row.status,
        "label": row.label,
        "finding": row.label if row.status == "done" else (row.error if row.status == "failed" else None),
        "probability": row.probability,
        "uncertainty": row.uncertainty,
        "out_of_distribution": row.out_of_distribution,
        "needs_review": result.get("needs_review"),
        "priority": row.urgency,
        "modality": row.modality,
        "received_at": iso_utc(row.received_at),
        "finished_at": iso_utc(row.finished_at) if row.finished_at else None,
        "minutes_to_result": _minutes(row.received_at, row.finished_at) if row.status == "done" else None,
        "error": row.error if row.status == "failed" else None,
        "referenced_sop_instance_uid": result.get("referenced_sop_instance_uid"),
        "feedback": verdict,
    }
    if with_patient:
        entry["patient_name"], entry["patient_id"] = row.patient_name, row.patient_id
    return entry


def _verdict(row: Any) -> dict[str, Any]:
    return {"accepted": bool(row.accepted), "comment": row.comment, "reader": row.reader,
            "time": iso_utc(row.time), "job_id": row.job_id}


def last_verdicts(c, rows: Sequence[Any]) -> dict[int, dict]:
    """Each job's last verdict: on the job itself, or on its study as a whole (no job named)."""
    studies = sorted({r.study_uid for r in rows})
    if not studies:
        return {}
    found = c.execute(select(feedback).where(feedback.c.study_uid.in_(studies)).order_by(feedback.c.id)).all()
    verdicts: dict[int, dict] = {}
    for row in rows:
        mine = [f for f in found if f.job_id == row.id or (f.job_id is None and f.study_uid == row.study_uid)]
        if mine:
            verdicts[row.id] = _verdict(mine[-1])
    return verdicts


def worklist_page(db: Database, filters: Filters = Filters(), limit: int = 50, cursor: str | None = None,
                  with_patient: bool = False, extra: Callable[[Any], dict[str, Any]] | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the worklist and the cursor of the next (None: this is the last page).

    ``extra(row)``: more fields for a row's item, from its database row (e.g. the service's ``viewable``)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise WorklistError(f"limit {limit}: give 1 to {MAX_LIMIT}")
    clauses = filters.clauses()
    if cursor:
        clauses.append(_after(cursor))
    query = (select(jobs, SORT_KEY.label("sort_key")).where(*clauses)
             .order_by(SORT_KEY.desc(), jobs.c.received_at, jobs.c.id).limit(limit + 1))
    with db.transaction() as c:
        rows = c.execute(query).all()
        page = rows[:limit]
        verdicts = last_verdicts(c, page)
    following = None
    if len(rows) > limit:
        last = page[-1]
        following = _encode_cursor(float(last.sort_key), last.received_at, last.id)
    return [{**item(r, verdicts.get(r.id), with_patient), **(extra(r) if extra else {})} for r in page], following


def study_jobs(db: Database, study_uid: str) -> list[int]:
    """The ids of the jobs on a study (oldest first)."""
    with db.transaction() as c:
        return list(c.execute(select(jobs.c.id).where(jobs.c.study_uid == study_uid).order_by(jobs.c.id)).scalars())


def job_row(db: Database, job_id: int) -> Any:
    with db.transaction() as c:
        return c.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
