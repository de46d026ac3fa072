"""The run folder's fixed names and readers, shared by training, inference and the service::

    config.yaml          the resolved configuration
    plan.json            what was derived from the data
    checkpoints/         last.pt (resume) and best.pt (use)
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from medsight.config import RunConfig, config_from_dict
from medsight.errors import InputFileError

CONFIG_FILE, PLAN_FILE = "config.yaml", "plan.json"


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
