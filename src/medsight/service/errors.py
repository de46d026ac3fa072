"""Every error as a JSON body ``{"status", "error", "detail"}`` with the right HTTP status.

400 bad image, 401 missing/wrong key, 413 too large, 415 unsupported content, 422 bad
parameters or a refused (identifiable) image, 503 busy (with Retry-After). Messages never
carry the server's temporary paths or the client's file name (which may hold a patient name).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from medsight.errors import InputFileError, MedsightError

log = logging.getLogger(__name__)


class ApiError(HTTPException):
    """An error answered to the client as JSON with ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=detail, headers=headers)


def error_body(status: int, detail: str, **extra) -> dict:
    return {"status": status, "error": HTTPStatus(status).phrase, "detail": detail, **extra}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return JSONResponse(error_body(status, detail, **extra), status_code=status, headers=headers)


def user_error(exc: MedsightError, status: int = 400, name: str = "upload") -> ApiError:
    """A library error about an uploaded file, with the server-side path replaced by ``name``."""
    detail = f"{name}: {exc.problem}" if isinstance(exc, InputFileError) else str(exc)
    return ApiError(status, detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = " ".join(str(part) for part in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(MedsightError)
    async def _medsight(request: Request, exc: MedsightError) -> JSONResponse:
        return error_response(user_error(exc).status_code, user_error(exc).detail)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the operator's log; the client gets no internals.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error; the operator's log has the details")
