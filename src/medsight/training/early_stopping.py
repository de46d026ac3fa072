"""Track the monitored validation metric: which epoch to keep as ``best.pt``, and when to stop.

The kept epoch is the latest whose value is within one standard error of the best so far
(Breiman's one-standard-error rule), when the task reports that error as ``<monitor>_se``.
On a small validation split the metric's noise is larger than the real differences between
late epochs: on BreastMNIST (78 val cases) val AUC jumped between 0.90 and 0.965 from epoch
to epoch (standard error about 0.02), so its plain maximum kept a mid-training epoch at a
lucky peak, with a worse test AUC and accuracy than the settled model training ended with
(docs/cpu_kinds.md). Values that are statistically equal go to the later, lower-learning-rate
epoch; tasks that report no standard error keep the plain maximum.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    monitor: str = "val_auc"
    patience: int = 0  # 0: never stop early
    min_delta: float = 0.0
    within_se: bool = True  # keep the latest epoch within one standard error of the best
    best: float | None = None  # the best value so far (patience counts from it)
    best_se: float = 0.0
    best_epoch: int = 0
    kept_epoch: int = 0  # the epoch in best.pt
    bad_epochs: int = 0

    @property
    def minimise(self) -> bool:
        return self.monitor.endswith("loss")

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record this epoch; return True when it is the one to keep (save as ``best.pt``)."""
        value = _number(metrics.get(self.monitor), math.inf if self.minimise else -math.inf)
        sign = -1.0 if self.minimise else 1.0
        improved = self.best is None or sign * (value - self.best) > self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_se = _number(metrics.get(f"{self.monitor}_se"), 0.0) if self.within_se else 0.0
        else:
            self.bad_epochs += 1
        keep = improved or (self.best_se > 0 and sign * (self.best - value) <= self.best_se)
        if keep:
            self.kept_epoch = epoch
        return keep

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _number(value: float | None, missing: float) -> float:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
