"""Ensembles: several runs of the same task whose class probabilities are averaged.

``medsight train --folds K`` writes one, and ``medsight ensemble RUN... --out DIR`` makes one
from any runs with the same classes and input. An ensemble folder holds ``ensemble.json``
(its members); ``load_run`` on it gives a run whose engine averages the members'
probabilities, so predict, evaluate and the service use it like a single model. Grad-CAM
heatmaps come from the first member.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from medsight.errors import ConfigError, InputFileError
from medsight.utils.atomic import write_json

ENSEMBLE_FILE = "ensemble.json"


class EnsembleEngine:
    """Mean of the members' (temperature-scaled) softmax, returned as log-probabilities, so a
    softmax of the output gives the mean."""

    def __init__(self, engines: Sequence, temperatures: Sequence[float] | None = None):
        self.engines = list(engines)
        self.temperatures = list(temperatures) if temperatures is not None else [1.0] * len(self.engines)
        self.name = f"ensemble of {len(self.engines)} ({self.engines[0].name})"

    def member_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``(members, N, K)`` probabilities, e.g. for the ensemble's variance."""
        return torch.stack([torch.softmax(engine(images) / t, 1) for engine, t in zip(self.engines, self.temperatures)])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.member_probabilities(images).mean(0).clamp(min=1e-12).log()


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


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
    from medsight.runtime.run_folder import read_run

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
    if first.get("task", "classification") != "classification":
        raise ConfigError("ensembles of segmentation runs are not supported yet")
    out.mkdir(parents=True, exist_ok=True)
    rel = [str(Path(m).resolve().relative_to(out.resolve())) if Path(m).resolve().is_relative_to(out.resolve())
           else str(Path(m).resolve()) for m in members]
    write_json(out / ENSEMBLE_FILE, {"members": rel, "class_names": first["class_names"]})
    return out
