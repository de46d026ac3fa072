"""An ensemble folder: ``ensemble.json`` lists runs of the same task whose probabilities are
averaged (``medsight.inference.ensemble``); training writes one for ``--folds``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from medsight.errors import ConfigError, InputFileError
from medsight.runtime.run_folder import ENSEMBLE_FILE, PLAN_FILE, read_run
from medsight.tasks import TaskKind, task_of
from medsight.utils.atomic import write_json

__all__ = ["ENSEMBLE_FILE", "is_ensemble", "member_folders", "run_task", "write_ensemble"]


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def run_task(folder: str | Path) -> TaskKind:
    """The task kind of a run folder or of an ensemble's members (one error line if it has none)."""
    folder = Path(folder)
    plan_dir = member_folders(folder)[0] if is_ensemble(folder) else folder
    return task_of(read_run(plan_dir)[1], plan_dir / PLAN_FILE)


def member_folders(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    try:
        meta = json.loads((folder / ENSEMBLE_FILE).read_text())
        members = [folder / m for m in meta["members"]]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputFileError(folder / ENSEMBLE_FILE, f"not a valid ensemble file ({exc})") from None
    if not members:
        raise InputFileError(folder / ENSEMBLE_FILE, "lists no members")
    return members


def write_ensemble(out: str | Path, members: Sequence[str | Path]) -> Path:
    """Write ``OUT/ensemble.json`` for ``members`` after checking they can be averaged."""
    out = Path(out)
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    plans = []
    for m in members:
        if is_ensemble(m):
            raise ConfigError(f"{m}: is itself an ensemble; list its members instead")
        plans.append(read_run(m)[1])
    first = plans[0]
    for m, plan in zip(members[1:], plans[1:]):
        for key in ("task", "class_names", "in_channels", "spatial_dims", "input_shape"):
            if plan.get(key) != first.get(key):
                raise ConfigError(f"{m}: {key} {plan.get(key)!r} differs from {members[0]}'s {first.get(key)!r}")
    kind = task_of(first, Path(members[0]) / PLAN_FILE)
    if not kind.ensembles:
        raise ConfigError(f"ensembles of {kind.name} runs are not supported yet")
    out.mkdir(parents=True, exist_ok=True)
    rel = [str(Path(m).resolve().relative_to(out.resolve())) if Path(m).resolve().is_relative_to(out.resolve())
           else str(Path(m).resolve()) for m in members]
    write_json(out / ENSEMBLE_FILE, {"members": rel, "class_names": first["class_names"]})
    return out
