"""Uploads: a body-size limit enforced while streaming, and a multipart reader into the service's folder.

The limit is checked on the declared Content-Length first (413 before a byte is read) and
then on the bytes actually received, so a chunked or lying client cannot make the service
buffer more than the limit. The file part streams straight into a fresh file in the
service's own temporary folder (a random name; the client's file name is never a path).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medsight.service.errors import ApiError, error_response

FILE_FIELD = "file"
MAX_TEXT_FIELD = 4096
DRAIN_SECONDS = 10.0


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body exceeds the upload limit of {limit / 1024 / 1024:g} MiB")


class BodySizeLimit:
    """ASGI middleware: 413 once a request body is (or says it will be) over ``max_bytes``.

    Before answering, the rest of a moderately oversized body is read and discarded (never
    kept): a server that answers and closes while the client is still sending makes the
    client's TCP stack reset the connection, and the client sees an error instead of the 413.
    Bodies declared over twice the limit are refused at once.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            if not declared.isdigit():
                await error_response(400, "bad Content-Length")(scope, receive, send)
                return
            if int(declared) <= 2 * self.max_bytes:
                await _drain(receive, 2 * self.max_bytes)
            error = too_large(self.max_bytes)
            await error_response(413, error.detail, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body"):
                        await _drain(receive, self.max_bytes)
                    # Raised inside the route, so the app's handler answers it as JSON 413.
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def _drain(receive: Receive, budget: int, seconds: float = DRAIN_SECONDS) -> None:
    """Read and drop the rest of a request body: at most ``budget`` bytes and ``seconds`` seconds."""
    deadline = time.monotonic() + seconds
    while budget > 0:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body"):
            return


@dataclass
class Upload:
    """One uploaded file on the service's disk, plus the small text fields sent with it."""

    path: Path
    filename: str = ""
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


async def receive_upload(request: Request, folder: Path) -> Upload:
    """Stream a ``multipart/form-data`` body's ``file`` part into a new file inside ``folder``."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise ApiError(415, "send the image as multipart/form-data with the field 'file'")
    if b"boundary" not in params:
        raise ApiError(400, "multipart body without a boundary")
    fd, name = tempfile.mkstemp(prefix="upload-", dir=folder)
    upload = Upload(Path(name))
    reader = _PartReader(os.fdopen(fd, "wb"), upload)
    try:
        parser = MultipartParser(params[b"boundary"], reader.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        upload.remove()
        raise ApiError(400, "malformed multipart body") from None
    except BaseException:
        upload.remove()
        raise
    finally:
        reader.out.close()
    if not reader.seen_file:
        upload.remove()
        raise ApiError(422, f"multipart field '{FILE_FIELD}' (the image) is missing")
    return upload


class _PartReader:
    """python-multipart callbacks: the ``file`` part goes to disk, short text fields to a dict."""

    def __init__(self, out, upload: Upload):
        self.out, self.upload = out, upload
        self.seen_file = False
        self._headers: dict[bytes, bytes] = {}
        self._header_name = self._header_value = b""
        self._name, self._is_file, self._text = "", False, bytearray()

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_val, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._text = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = self._name == FILE_FIELD
        if self._is_file:
            if self.seen_file:
                raise ApiError(422, f"send one image per request (field '{FILE_FIELD}' repeated)")
            self.seen_file = True
            self.upload.filename = options.get(b"filename", b"").decode("utf-8", "replace")[:255]

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.out.write(data[start:end])
            self.upload.size += end - start
        elif len(self._text) + end - start <= MAX_TEXT_FIELD:
            self._text += data[start:end]
        else:
            raise ApiError(422, f"form field {self._name!r} is longer than {MAX_TEXT_FIELD} bytes")

    def _end(self) -> None:
        if not self._is_file and self._name:
            self.upload.fields[self._name] = self._text.decode("utf-8", "replace")
