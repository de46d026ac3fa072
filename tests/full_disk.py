"""Full disks for tests: a simulated one (writes under a folder fail with ENOSPC once a byte
budget is spent) and, where the kernel lets us mount, a real small tmpfs."""

from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

_REAL_OPEN = io.open


class _Budget:
    def __init__(self, folder: Path, free: int):
        self.folder, self.free = Path(folder).resolve(), free

    def covers(self, file) -> bool:
        try:
            path = Path(os.fsdecode(file)).resolve()
        except TypeError:  # a file descriptor
            return False
        return path == self.folder or self.folder in path.parents


class _FullDiskFile:
    """A file whose writes stop, part-way like a real disk, when the budget runs out."""

    def __init__(self, fh, budget: _Budget):
        self._fh, self._budget = fh, budget

    def write(self, data) -> int:
        if len(data) > self._budget.free:
            part = self._budget.free
            self._fh.write(data[:part])
            self._budget.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget.free -= len(data)
        return self._fh.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)


@contextmanager
def disk_full(monkeypatch, folder: Path, free: int = 0) -> Iterator[_Budget]:
    """Until the block ends, files opened for writing under ``folder`` get ``free`` bytes in all."""
    budget = _Budget(folder, free)

    def limited_open(file, mode="r", *args, **kwargs):
        fh = _REAL_OPEN(file, mode, *args, **kwargs)
        if any(flag in mode for flag in "wax+") and budget.covers(file):
            return _FullDiskFile(fh, budget)
        return fh

    with monkeypatch.context() as patch:
        patch.setattr(io, "open", limited_open)
        patch.setattr(builtins, "open", limited_open)
        yield budget


@contextmanager
def small_tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``folder`` (skips the test where mounting is not
    permitted, e.g. without root)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` free bytes with one filler file."""
    stat = os.statvfs(folder)
    filler = folder / "filler"
    with _REAL_OPEN(filler, "wb") as fh:
        fh.write(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))
    return filler


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.tmp"))
