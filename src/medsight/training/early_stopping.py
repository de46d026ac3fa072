"""Track the monitored validation metric: which epoch to keep as ``best.pt``, and when to stop.

The kept epoch is the best of the metric's exponential moving average (weight ``smoothing`` on
the newest epoch, 0.3 by default), not of its raw value. On small validation splits the
metric's epoch-to-epoch noise is larger than the real differences between late epochs:
BreastMNIST's val AUC (78 cases) jumps by 0.03-0.06 from epoch to epoch. Its plain maximum
keeps a lucky single peak, often mid-training at a high learning rate. The smoothed curve
damps a single peak, yet falls when the model really overfits, so it keeps an epoch of the
settled trend and not one on an overfit tail either. The earlier one-standard-error rule
(the latest epoch within the metric's error of the best, ``within_se``) chose such a tail on
runs that overfit early (RetinaMNIST, planned: 0.727 against 0.744 test AUC over 3 seeds).
``bench/checkpoint_rule.py`` compares the rules on the same training runs; docs/cpu_kinds.md
has its table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

TREND = "_trend"  # metrics.jsonl: f"{monitor}{TREND}" is the moving average the kept epoch is chosen on


@dataclass
class EarlyStopping:
    monitor: str = "val_auc"
    patience: int = 0  # 0: never stop early
    min_delta: float = 0.0
    smoothing: float = 0.3  # weight of the newest epoch in the moving average (1: the raw value)
    within_se: bool = False  # also keep later epochs within one standard error of the best
    smoothed: float | None = None  # the moving average so far
    best: float | None = None  # its best value (patience counts from it)
    best_se: float = 0.0
    best_epoch: int = 0
    kept_epoch: int = 0  # the epoch in best.pt
    bad_epochs: int = 0

    @property
    def minimise(self) -> bool:
        return self.monitor.endswith("loss")

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record this epoch; return True when it is the one to keep (save as ``best.pt``)."""
        raw = _number(metrics.get(self.monitor), math.nan)
        if not math.isnan(raw):  # an epoch without the metric leaves the average as it was
            self.smoothed = raw if self.smoothed is None else (
                self.smoothing * raw + (1.0 - self.smoothing) * self.smoothed)
        sign = -1.0 if self.minimise else 1.0
        value = -sign * math.inf if math.isnan(raw) or self.smoothed is None else self.smoothed
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
        state = {"smoothing": 1.0, **state}  # a run saved before the moving average resumes as it began
        for key, value in state.items():
            setattr(self, key, value)


def _number(value: float | None, missing: float) -> float:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
