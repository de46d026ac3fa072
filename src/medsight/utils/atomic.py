"""Atomic writes: a killed process leaves either the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from medsight.errors import OutputFileError

TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    A failed write (a full disk, a read-only folder) raises :class:`OutputFileError` naming
    ``path``; the previous ``path`` is untouched and the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputFileError(path, f"cannot write: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())  # a full disk may only say so here (delayed allocation)
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OutputFileError(path, f"cannot write: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files of atomic writes a killed process left under ``folder``.

    Only safe while no other process writes there (the run-folder lock guarantees it).
    """
    removed = 0
    for tmp in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        if tmp.is_file() and re.fullmatch(rf"\..+\.\w{{8}}{re.escape(TMP_SUFFIX)}", tmp.name):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def torch_save(obj: Any, path: str | Path) -> None:
    import torch  # here, so commands that never save tensors (deid) start without torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # Through a Python file, so a full disk raises OSError, not a RuntimeError of torch's
        # own writer; torch then fails again closing the archive, which must not hide it.
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
