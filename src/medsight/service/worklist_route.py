"""``GET /v1/worklist``, ``POST /v1/worklist/{study_uid}/feedback`` and ``GET
/v1/worklist/{study_uid}/view``: the triage worklist of the node's jobs (in the service's
database, ``medsight serve --db``), readers' verdicts on it, and a row's study opened in the viewer.

A row can be opened (``viewable``) when the service has the operator's PACS (``--pacs-url``, where
the node's destination stored the study) and serves the row's model: the slice the finding refers
to is retrieved (WADO-RS) and diagnosed again with its heatmap and pixels, as an upload would be.

Rows are sorted by triage priority (``store/worklist.py``). Patient name and ID are returned only
when the operator starts the service with ``--show-patient``; nothing here logs them, nor a
reader's comment (it may name a patient).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path as FilePath
from typing import Any, Callable, Optional

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from medsight.errors import MedsightError
from medsight.inference.audit import AuditTrail
from medsight.service.errors import ApiError, user_error
from medsight.service.models import ModelRegistry, PredictOptions, ServedModel
from medsight.service.pool import InferencePool
from medsight.service.schemas import MAX_SIMILAR, UID_PATTERN, Prediction
from medsight.service.settings import ServiceSettings, caller_id
from medsight.store import Database
from medsight.store.jobs import add_feedback
from medsight.store.worklist import MAX_LIMIT, Filters, WorklistError, job_row, parse_time, study_jobs, worklist_page

log = logging.getLogger(__name__)
NO_DATABASE = "the worklist needs the node's database: start the service with --db URL (the node.yaml 'db')"


class WorklistPage(BaseModel):
    items: list[dict[str, Any]] = Field(description="Rows, most urgent first: study_uid, status, label, "
                                                    "probability, priority, received_at, finished_at, ...")
    next: Optional[str] = Field(None, description="Cursor of the next page (null: the last page)")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accepted: bool = Field(..., description="true: the reader accepts the AI finding; false: rejects it")
    comment: Optional[str] = Field(None, max_length=2000)
    job_id: Optional[int] = Field(None, description="The row (job) judged; default: the study as a whole")


def served_for(registry: ModelRegistry, run: str) -> ServedModel | None:
    """The served model of a job's run folder (the same folder, else the same name), if any."""
    target = FilePath(run)
    runs = [m for m in registry.models.values() if m.run is not None]
    for model in runs:
        if FilePath(model.run.run_dir).resolve() == target.resolve():
            return model
    return next((m for m in runs if m.name == target.name), None)


def worklist_router(registry: ModelRegistry, settings: ServiceSettings, pool: InferencePool,
                    trails: dict[str, AuditTrail], database: Callable[[], Database | None]) -> APIRouter:
    router = APIRouter(prefix="/worklist", tags=["worklist"])

    def db() -> Database:
        found = database()
        if found is None:
            raise ApiError(404, NO_DATABASE)
        return found

    def why_not_viewable(row: Any) -> str | None:
        """Why a row's study cannot be opened in the viewer (None: it can)."""
        if row.status != "done":
            return f"job {row.id} is {row.status}: only a finished result can be opened"
        if settings.pacs is None:
            return "the service has no PACS to fetch the study from (start it with --pacs-url)"
        if served_for(registry, row.run) is None:
            return f"the service does not serve the model {FilePath(row.run).name!r} that read this study"
        if not json.loads(row.result or "{}").get("referenced_sop_instance_uid"):
            return f"job {row.id} does not name the image its finding refers to"
        return None

    def viewable(row: Any) -> dict[str, Any]:
        return {"viewable": why_not_viewable(row) is None}

    @router.get("", response_model=WorklistPage)
    def worklist(
        status: Optional[list[str]] = Query(None, description="Only these statuses (repeat, or comma-separated): "
                                                              "received, queued, running, done, failed"),
        modality: Optional[str] = Query(None, max_length=16, description="Only this modality (e.g. CT)"),
        since: Optional[str] = Query(None, description="Received at or after (ISO 8601 date or time, UTC)"),
        until: Optional[str] = Query(None, description="Received before (a bare date: up to its end)"),
        limit: int = Query(50, ge=1, le=MAX_LIMIT, description="Rows per page"),
        cursor: Optional[str] = Query(None, max_length=512, description="The previous page's `next`"),
    ) -> dict[str, Any]:
        """The triage worklist: the node's studies, most urgent first (priority: the probability of
        the critical class, raised by uncertainty and by an out-of-distribution input)."""
        statuses = tuple(s.strip() for value in status or () for s in value.split(",") if s.strip())
        try:
            filters = Filters(statuses, modality or None,
                              parse_time(since, "since") if since else None,
                              parse_time(until, "until", end_of_day=True) if until else None)
            items, following = worklist_page(db(), filters, limit, cursor, with_patient=settings.show_patient,
                                             extra=viewable)
        except WorklistError as exc:
            raise ApiError(422, str(exc)) from None
        return {"items": items, "next": following}

    @router.post("/{study_uid}/feedback", status_code=201)
    def add_verdict(
        request: FeedbackRequest,
        study_uid: str = Path(..., max_length=64, pattern=UID_PATTERN),
    ) -> dict[str, Any]:
        """A reader accepts or rejects the AI finding on a study (or one of its rows, ``job_id``),
        with an optional comment; stored with the reader (the API key's id, never the key)."""
        found = db()
        jobs = study_jobs(found, study_uid)
        if not jobs:
            raise ApiError(404, f"study {study_uid} is not on the worklist")
        if request.job_id is not None and request.job_id not in jobs:
            raise ApiError(404, f"job {request.job_id} is not a row of study {study_uid}")
        if request.job_id is None and len(jobs) == 1:
            request.job_id = jobs[0]
        reader = caller_id(settings)
        comment = (request.comment or "").strip() or None
        feedback_id = add_feedback(found, reader, request.accepted, job_id=request.job_id, study_uid=study_uid,
                                   comment=comment)
        log.info("feedback %d on study %s: %s by %s", feedback_id, study_uid,
                 "accepted" if request.accepted else "rejected", reader)
        row = job_row(found, request.job_id) if request.job_id is not None else None
        return {"id": feedback_id, "study_uid": study_uid, "job_id": request.job_id, "accepted": request.accepted,
                "comment": comment, "reader": reader, "status": row.status if row is not None else None}

    @router.get("/{study_uid}/view", response_model=Prediction, response_model_exclude_unset=True)
    async def view(
        study_uid: str = Path(..., max_length=64, pattern=UID_PATTERN),
        job_id: Optional[int] = Query(None, description="The row to open (default: the study's most urgent)"),
        similar: int = Query(0, ge=0, le=MAX_SIMILAR, description="Also the K most similar cases of the model's index"),
    ) -> dict[str, Any]:
        """Open a row's study in the viewer: the image its finding refers to, fetched from the PACS
        and diagnosed again, with the heatmap and the pixels (the same answer as an upload's)."""
        found = db()
        rows = [job_row(found, i) for i in study_jobs(found, study_uid)]
        if not rows:
            raise ApiError(404, f"study {study_uid} is not on the worklist")
        if job_id is not None:
            rows = [r for r in rows if r.id == job_id]
            if not rows:
                raise ApiError(404, f"job {job_id} is not a row of study {study_uid}")
        row = max(rows, key=lambda r: (r.status == "done", r.urgency if r.urgency is not None else -1.0, -r.id))
        problem = why_not_viewable(row)
        if problem:
            raise ApiError(409, f"cannot open study {study_uid}: {problem}")
        served = served_for(registry, row.run)
        served.check_similar(similar)
        start = time.perf_counter()
        async with pool.slot():
            result, size = await pool.run(_view, served, settings, trails.get(served.name), row, similar)
        return {"model": served.name, "task": served.task, **result, "job_id": row.id, "study_uid": study_uid,
                "input": {"format": "dicom", "bytes": size, "source": "pacs"},
                "elapsed_ms": round((time.perf_counter() - start) * 1000, 1)}

    return router


def _view(served: ServedModel, settings: ServiceSettings, trail: AuditTrail | None, row: Any, similar: int = 0
          ) -> tuple[dict, int]:
    """Retrieve the row's referenced instance from the PACS and diagnose it (on a worker thread)."""
    from medsight.pacs.client import PacsError, connect, pacs_errors
    from medsight.service.diagnose import audited

    assert settings.pacs is not None
    sop = json.loads(row.result)["referenced_sop_instance_uid"]
    try:
        client = connect(settings.pacs.url, settings.pacs.user, settings.pacs.password)
        with pacs_errors(f"retrieving the image of study {row.study_uid}"):
            ds = client.retrieve_instance(row.study_uid, row.series_uid, sop)
    except PacsError as exc:
        raise ApiError(exc.status, str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="medsight-view-") as work:
        path = FilePath(work) / "instance.dcm"
        try:
            ds.save_as(path, enforce_file_format=True)
        except (OSError, ValueError) as exc:
            raise user_error(MedsightError(f"the PACS sent an instance that cannot be kept: {exc}")) from None
        # the PACS is the operator's, as for /v1/pacs/run: its images are not refused as identifiable
        options = PredictOptions(heatmap=True, image=True, similar=similar)
        result, _ = audited(trail, caller_id(settings), served, path, options, require_deidentified=False)
        return result, path.stat().st_size
