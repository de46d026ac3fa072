"""The FastAPI app: ``/health``, ``/v1/models``, ``/v1/predict``, ``/v1/pacs/run``, ``/v1/worklist``,
the viewer and ``/docs``.

Thin: requests are checked (key, size, type) and handed to the same library functions the
command line uses, on the inference pool. Nothing patient-related is logged: not the client's
file name (it may hold a patient name), not DICOM attributes.
"""

from __future__ import annotations

import hmac
import logging
import tempfile
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.responses import RedirectResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import medsight
from medsight.errors import MedsightError
from medsight.inference.audit import AuditTrail
from medsight.service.diagnose import audited
from medsight.service.errors import ApiError, install_error_handlers
from medsight.service.models import ModelRegistry, PredictOptions, ServedModel
from medsight.service.pacs_route import pacs_router
from medsight.service.pool import InferencePool
from medsight.service.schemas import ERROR_RESPONSES, MAX_SIMILAR, Prediction
from medsight.service.settings import ServiceSettings, caller_id
from medsight.service.upload import FILE_FIELD, BodySizeLimit, receive_upload
from medsight.service.worklist_route import worklist_router
from medsight.store import Database, open_database

log = logging.getLogger(__name__)
API_KEY_HEADER = "X-API-Key"
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FILE_FIELD],
    "properties": {FILE_FIELD: {"type": "string", "format": "binary",
                                "description": "DICOM, NIfTI, PNG/JPEG/TIFF image (content is sniffed)"}},
}}}}}
# The viewer loads nothing from elsewhere and runs no inline script.
VIEWER_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def create_app(registry: ModelRegistry, settings: ServiceSettings, audit_db: Database | None = None) -> FastAPI:
    """The service for the models in ``registry`` (loaded already), configured by ``settings``;
    predictions are audited in ``audit_db`` (or the database ``settings.audit_db`` names)."""
    if audit_db is None and settings.audit_db:
        audit_db = open_database(settings.audit_db)
    trails = {m.name: AuditTrail(audit_db, m.run, m.name) for m in registry.models.values()} if audit_db else {}
    pool = InferencePool(settings.workers, settings.queue_size)
    # Uploads land here only: a private folder (mode 0700) removed at shutdown or exit.
    upload_dir = tempfile.TemporaryDirectory(prefix="medsight-serve-")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.shutdown()
        upload_dir.cleanup()

    app = FastAPI(title="medsight", version=medsight.__version__, lifespan=lifespan,
                  description="Diagnosis service: image in, label, probabilities and heatmap out. "
                              f"Send the API key in the `{API_KEY_HEADER}` header.")
    app.state.registry, app.state.settings, app.state.pool = registry, settings, pool
    app.state.upload_dir = Path(upload_dir.name)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.include_router(_api_router(registry, settings, pool, Path(upload_dir.name), trails, audit_db))

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: no key needed, no details about the models or data."""
        return {"status": "ok", "version": medsight.__version__, "models": len(registry.models)}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/viewer/")

    app.mount("/viewer", StaticFiles(directory=str(files("medsight.service") / "static"), html=True), name="viewer")
    return app


def _api_router(registry: ModelRegistry, settings: ServiceSettings, pool: InferencePool,
                upload_dir: Path, trails: dict[str, AuditTrail], db: Database | None = None) -> APIRouter:
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    def require_key(key: Optional[str] = Security(key_header)) -> None:
        if settings.open_access:
            return
        if not key or not hmac.compare_digest(key.encode(), (settings.api_key or "").encode()):
            raise ApiError(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)",
                           headers={"WWW-Authenticate": API_KEY_HEADER})

    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)

    def model_named(name: Optional[str]) -> ServedModel:
        try:
            return registry.get(name)
        except MedsightError as exc:
            raise ApiError(422, str(exc)) from None

    @router.get("/models", tags=["models"])
    async def models() -> list[dict[str, Any]]:
        """The loaded models: name, task, classes, input shape, explanation methods, indexed similar cases."""
        return registry.describe()

    @router.post("/predict", tags=["predict"], response_model=Prediction, openapi_extra=UPLOAD_BODY,
                 response_model_exclude_unset=True)
    async def predict(
        request: Request,
        model: Optional[str] = Query(None, description="Model name (optional when one model is served)"),
        heatmap: bool = Query(False, description="Return the Grad-CAM heatmap as a PNG layer"),
        explain: Literal["gradcam", "gradcam++", "occlusion"] = Query("gradcam", description="Heatmap method"),
        image: bool = Query(False, description="Return the image's pixels (for a viewer)"),
        tta: bool = Query(False, description="Test-time augmentation: average over flips (and 2D rotations)"),
        allow_foreign: bool = Query(False, description="Predict an image the input guard refuses as foreign "
                                                       "(marked out_of_distribution) instead of answering 422"),
        similar: int = Query(0, ge=0, le=MAX_SIMILAR, description="Also the K most similar cases of the model's "
                                                                  "index (models listed with similar_cases > 0)"),
    ) -> dict[str, Any]:
        """Diagnose one image sent as multipart field `file`: label, calibrated probabilities,
        uncertainty and "needs review" flag, optional heatmap and similar earlier cases."""
        served = model_named(model)
        served.check_similar(similar)
        start = time.perf_counter()
        async with pool.slot():
            upload = await receive_upload(request, upload_dir)
            # a fused model's clinical values come as form fields beside the file (age=63, sex=F)
            options = PredictOptions(heatmap=heatmap, method=explain, image=image, tta=tta,
                                     clinical=dict(upload.fields), allow_foreign=allow_foreign, similar=similar)
            try:
                result, kind = await pool.run(audited, trails.get(served.name), caller_id(settings), served,
                                              upload.path, options, settings.require_deidentified)
            finally:
                upload.remove()
        elapsed = round((time.perf_counter() - start) * 1000, 1)
        log.info("predict model=%s format=%s bytes=%d label=%s %.0f ms", served.name, kind, upload.size,
                 result.get("label"), elapsed)
        return {"model": served.name, "task": served.task, **result,
                "input": {"format": kind, "bytes": upload.size}, "elapsed_ms": elapsed}

    router.include_router(pacs_router(registry, settings, pool, model_named))
    router.include_router(worklist_router(registry, settings, pool, trails, lambda: db))
    return router


class SecurityHeaders:
    """ASGI middleware adding the viewer's security headers to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/viewer"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *VIEWER_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
