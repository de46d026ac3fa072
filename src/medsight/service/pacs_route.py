"""``POST /v1/pacs/run``: diagnose a study on the operator's PACS and store the results back.

The PACS address and credentials come from the operator (``medsight serve --pacs-url``), never
from the request, so a client cannot point the service at another server.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import APIRouter

from medsight.errors import MedsightError
from medsight.service.errors import ApiError, user_error
from medsight.service.models import ModelRegistry, ServedModel
from medsight.service.pool import InferencePool
from medsight.service.schemas import PacsRunRequest
from medsight.service.settings import ServiceSettings

log = logging.getLogger(__name__)


def pacs_router(registry: ModelRegistry, settings: ServiceSettings, pool: InferencePool,
                model_named: Callable[[Optional[str]], ServedModel]) -> APIRouter:
    router = APIRouter(prefix="/pacs", tags=["pacs"])

    @router.post("/run")
    async def pacs_run(request: PacsRunRequest) -> dict[str, Any]:
        """Pull the study (or one series), run the model, store an SR and a heatmap SC under it."""
        if settings.pacs is None:
            raise ApiError(404, "no PACS configured on this service (start it with --pacs-url)")
        served = model_named(request.model)
        if served.run is None or not served.kind.accepts("pacs run"):
            raise ApiError(422, f"model {served.name!r} ({served.task}) cannot run on PACS studies yet")
        async with pool.slot():
            series = await pool.run(_run, served, settings, request)
        return {"study_uid": request.study_uid, "model": served.name, "series": series}

    return router


def _run(served: ServedModel, settings: ServiceSettings, request: PacsRunRequest) -> list[dict[str, Any]]:
    from medsight.pacs.client import PacsError, connect
    from medsight.pacs.run import run_study

    assert settings.pacs is not None and served.run is not None
    try:
        client = connect(settings.pacs.url, settings.pacs.user, settings.pacs.password)
        with tempfile.TemporaryDirectory(prefix="medsight-pacs-") as work:
            return run_study(client, served.run, request.study_uid, model_name=served.name,
                             series_uid=request.series_uid, store_results=request.store, work_dir=Path(work),
                             lock=served.lock)
    except PacsError as exc:
        raise ApiError(exc.status, str(exc)) from None
    except MedsightError as exc:
        raise user_error(exc) from None
