"""Track the monitored validation metric: best value, and when to stop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    monitor: str = "val_auc"
    patience: int = 0  # 0: never stop early
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    @property
    def minimise(self) -> bool:
        return self.monitor.endswith("loss")

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record this epoch; return True when it is the best so far."""
        value = metrics.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = math.inf if self.minimise else -math.inf
        sign = -1.0 if self.minimise else 1.0
        improved = self.best is None or sign * (value - self.best) > self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
