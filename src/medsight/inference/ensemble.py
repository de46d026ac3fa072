"""Ensembles: several runs of the same task whose class probabilities are averaged.

``medsight train --folds K`` writes one, and ``medsight ensemble RUN... --out DIR`` makes one
from any runs with the same classes and input. An ensemble folder holds ``ensemble.json``
(its members; :mod:`medsight.runtime.ensemble_folder` writes and reads it); ``load_run`` on
it gives a run whose engine averages the members' probabilities, so predict, evaluate and
the service use it like a single model. Grad-CAM heatmaps come from the first member.
"""

from __future__ import annotations

from typing import Sequence

import torch


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
