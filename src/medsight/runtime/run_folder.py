"""The run folder: every file name in it, its typed paths, its readers and its lock, shared by
training, evaluation, inference and the service. No other module spells a run file's name::

    config.yaml          the resolved configuration
    plan.json            what was derived from the data (with its schema_version)
    checkpoints/         last.pt (resume) and best.pt (use)
    metrics.jsonl        one line per epoch; training_curves.png
    metrics.json         evaluate: metrics with CIs;  report.html: the report
    decision.json        evaluate --target-sensitivity: the threshold predict uses
    calibration.json     temperature and review threshold fitted on val
    model.onnx           export (export.json: what it was exported from)
    ensemble.json        an ensemble folder's members
    .lock                held by the process writing the run (see lock_run_folder)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from medsight.config import RunConfig, config_from_dict
from medsight.errors import InputFileError, MedsightError
from medsight.utils.atomic import remove_stale_temporaries, write_json

CONFIG_FILE, PLAN_FILE, LOCK_FILE = "config.yaml", "plan.json", ".lock"
CHECKPOINTS_DIR, LAST, BEST = "checkpoints", "last.pt", "best.pt"
HISTORY_FILE, CURVES_FILE = "metrics.jsonl", "training_curves.png"
METRICS_FILE, REPORT_FILE, DECISION_FILE = "metrics.json", "report.html", "decision.json"
CALIBRATION_FILE, ONNX_FILE, EXPORT_FILE = "calibration.json", "model.onnx", "export.json"
ENSEMBLE_FILE, POSTPROCESSING_FILE, ENGINE_FILE = "ensemble.json", "postprocessing.json", "engine.json"
PROFILE_FILE = "input_profile.json"
# what is fitted on or made from a trained model: stale once the model is trained again
DERIVED_FILES = (CALIBRATION_FILE, DECISION_FILE, ONNX_FILE, EXPORT_FILE, ENGINE_FILE, POSTPROCESSING_FILE,
                 PROFILE_FILE, METRICS_FILE, REPORT_FILE)
# plan.json's layout; plans written before it was recorded (no key) are version 0 and still load
PLAN_SCHEMA_VERSION = 1


def _file(name: str) -> property:
    return property(lambda self: self.path / name, doc=f"``RUN/{name}``")


@dataclass(frozen=True)
class RunFolder:
    """Typed paths of one run folder: ``RunFolder(path).plan`` instead of ``path / "plan.json"``."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    config = _file(CONFIG_FILE)
    plan = _file(PLAN_FILE)
    metrics = _file(METRICS_FILE)
    report = _file(REPORT_FILE)
    decision = _file(DECISION_FILE)
    calibration = _file(CALIBRATION_FILE)
    history = _file(HISTORY_FILE)
    curves = _file(CURVES_FILE)
    onnx = _file(ONNX_FILE)
    export = _file(EXPORT_FILE)
    ensemble = _file(ENSEMBLE_FILE)
    postprocessing = _file(POSTPROCESSING_FILE)
    engine = _file(ENGINE_FILE)
    lock = _file(LOCK_FILE)
    checkpoints = _file(CHECKPOINTS_DIR)

    def checkpoint(self, name: str = BEST) -> Path:
        return self.path / CHECKPOINTS_DIR / name


def checkpoint_path(run_dir: str | Path, name: str = BEST) -> Path:
    """``RUN/checkpoints/NAME`` (``best.pt`` by default)."""
    return RunFolder(run_dir).checkpoint(name)


def write_plan(run_dir: str | Path, plan: dict[str, Any]) -> Path:
    """Write ``plan.json`` atomically, stamped with the schema version it follows."""
    path = RunFolder(run_dir).plan
    write_json(path, {"schema_version": PLAN_SCHEMA_VERSION, **{k: v for k, v in plan.items()
                                                                if k != "schema_version"}})
    return path


def read_plan(run_dir: str | Path) -> dict[str, Any]:
    """The plan of a run folder (any schema version up to this medsight's), or one error line."""
    path = RunFolder(run_dir).plan
    if not path.is_file():
        raise InputFileError(Path(run_dir), f"not a medsight run folder (no {PLAN_FILE})")
    try:
        plan = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(plan, dict):
        raise InputFileError(path, "not a plan (expected a JSON object)")
    version = plan.get("schema_version", 0)
    if not isinstance(version, int) or version > PLAN_SCHEMA_VERSION:
        raise InputFileError(path, f"schema_version {version!r} is newer than this medsight reads "
                                   f"({PLAN_SCHEMA_VERSION}); upgrade medsight")
    return plan


def read_run(run_dir: str | Path) -> tuple[RunConfig, dict]:
    """The saved config and plan of a run folder, or a one-line error naming what is missing."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, PLAN_FILE):
        if not (run_dir / name).is_file():
            raise InputFileError(run_dir, f"not a medsight run folder (no {name})")
    return read_config(run_dir), read_plan(run_dir)


def read_saved_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.yaml`` as saved (a plain mapping, for reports), or one error line."""
    path = RunFolder(run_dir).config
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputFileError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    if raw is not None and not isinstance(raw, dict):
        raise InputFileError(path, "not a medsight config (expected a YAML mapping of sections)")
    return raw or {}


def read_config(run_dir: str | Path) -> RunConfig:
    """``config.yaml`` as a validated :class:`RunConfig`, or one error line naming the key."""
    return config_from_dict(read_saved_config(run_dir), str(RunFolder(run_dir).config))


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
