"""The run folder's fixed names, readers and lock, shared by training, inference and the service::

    config.yaml          the resolved configuration
    plan.json            what was derived from the data
    checkpoints/         last.pt (resume) and best.pt (use)
    .lock                held by the process writing the run (see lock_run_folder)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from medsight.config import RunConfig, config_from_dict
from medsight.errors import InputFileError, MedsightError
from medsight.utils.atomic import remove_stale_temporaries

CONFIG_FILE, PLAN_FILE, LOCK_FILE = "config.yaml", "plan.json", ".lock"


def read_run(run_dir: str | Path) -> tuple[RunConfig, dict]:
    """The saved config and plan of a run folder, or a one-line error naming what is missing."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, PLAN_FILE):
        if not (run_dir / name).is_file():
            raise InputFileError(run_dir, f"not a medsight run folder (no {name})")
    cfg = read_config(run_dir)
    try:
        plan = json.loads((run_dir / PLAN_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(run_dir / PLAN_FILE, f"not valid JSON ({exc})") from None
    return cfg, plan


def read_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputFileError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    return config_from_dict(raw or {}, str(path))


@contextmanager
def lock_run_folder(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir`` for one writer: a second training started into it is refused.

    The lock is an ``flock`` on ``run_dir/.lock``, so the kernel releases it when the holder
    exits in any way, ``kill -9`` included: a crashed run never leaves the folder locked. The
    file records the holder's PID and host for the message. Once held, temporary files that a
    killed writer left behind are removed. Ranks other than 0 of a ``torchrun`` launch share
    rank 0's folder and lock.
    """
    run_dir = Path(run_dir)
    if os.environ.get("RANK", "0") != "0":
        yield run_dir / LOCK_FILE
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MedsightError(f"{run_dir}: cannot use this run folder ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            who = f" (PID {holder[0]} on {holder[1]})" if len(holder) >= 2 else ""
            raise MedsightError(f"{run_dir}: another medsight process{who} is writing to this run "
                                "folder; wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        remove_stale_temporaries(run_dir)
        yield run_dir / LOCK_FILE
    finally:
        os.close(fd)  # releases the lock
