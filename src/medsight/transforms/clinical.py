"""Clinical table columns (age, sex, lab values) as a fixed-length feature vector per case.

Fitted on the training split only and saved in ``plan.json``, so evaluation, prediction and
the service encode new cases exactly as training did (never refitted on test data):

- numeric columns (every training value a number, unless listed as categorical): missing
  values become the training median, then ``(x - mean) / std`` with the training mean and
  standard deviation; one more feature ``<name>:missing`` is 1 where the value was missing;
- categorical columns: one-hot over the categories seen in training, plus a
  ``<name>=<missing>`` feature; a category never seen in training is all zeros.

Missing: an empty cell or one of ``NA``, ``N/A``, ``NaN``, ``null``, ``none``, ``?`` (any case).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from medsight.errors import MedsightError

if TYPE_CHECKING:
    from medsight.data.prepared import PreparedSplit

MISSING_VALUES = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
MISSING = "<missing>"


def is_missing(value: Any) -> bool:
    return value is None or str(value).strip().lower() in MISSING_VALUES


def _number(value: Any) -> float | None:
    try:
        x = float(str(value).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


@dataclass
class ClinicalColumn:
    """How one column is encoded; numeric columns use mean/std/median, categorical ones categories."""

    name: str
    kind: str  # "numeric" or "categorical"
    mean: float = 0.0
    std: float = 1.0
    median: float = 0.0
    categories: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        if self.kind == "numeric":
            return [self.name, f"{self.name}:missing"]
        return [f"{self.name}={c}" for c in [*self.categories, MISSING]]

    def encode(self, value: Any, case: str) -> list[float]:
        if self.kind == "categorical":
            key = MISSING if is_missing(value) else str(value).strip()
            return [float(key == c) for c in [*self.categories, MISSING]]
        if is_missing(value):
            return [(self.median - self.mean) / self.std, 1.0]
        x = _number(value)
        if x is None:
            raise MedsightError(f"clinical column {self.name!r} of case {case}: {str(value)[:40]!r} is not a "
                                "number (its training values were numbers; leave the cell empty if unknown)")
        return [(x - self.mean) / self.std, 0.0]


@dataclass
class ClinicalEncoder:
    columns: list[ClinicalColumn]

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, Any]], names: Sequence[str],
            categorical: Sequence[str] = ()) -> "ClinicalEncoder":
        """Fit on the training split's rows (dicts of column name to raw value)."""
        if not rows:
            raise MedsightError("no training cases to fit the clinical columns on")
        columns = []
        for name in names:
            present = [str(r.get(name)).strip() for r in rows if not is_missing(r.get(name))]
            if not present:
                raise MedsightError(f"clinical column {name!r} has no values in the training split")
            numbers = [_number(v) for v in present]
            if name in categorical or any(x is None for x in numbers):
                columns.append(ClinicalColumn(name, "categorical", categories=sorted(set(present))))
                continue
            values = np.asarray(numbers, dtype=np.float64)
            std = float(values.std())
            columns.append(ClinicalColumn(name, "numeric", mean=float(values.mean()),
                                          std=std if std > 1e-12 else 1.0, median=float(np.median(values))))
        return cls(columns)

    @property
    def feature_names(self) -> list[str]:
        return [f for c in self.columns for f in c.features]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def transform(self, rows: Sequence[Mapping[str, Any]], ids: Sequence[str] | None = None) -> torch.Tensor:
        """``(len(rows), len(feature_names))`` float32; ``ids`` name a case in errors."""
        out = [[x for c in self.columns for x in c.encode(row.get(c.name), ids[i] if ids else str(i + 1))]
               for i, row in enumerate(rows)]
        return torch.tensor(out, dtype=torch.float32).reshape(len(rows), len(self.feature_names))

    def to_plan(self) -> dict:
        """What ``plan.json`` keeps: every fitted value, and the feature names in order."""
        columns = [{"name": c.name, "kind": c.kind,
                    **({"mean": c.mean, "std": c.std, "median": c.median} if c.kind == "numeric"
                       else {"categories": c.categories})} for c in self.columns]
        return {"columns": columns, "features": self.feature_names, "fitted_on": "train"}

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any]) -> "ClinicalEncoder":
        return cls([ClinicalColumn(**c) for c in plan["columns"]])


def with_clinical(split: "PreparedSplit", encoder: ClinicalEncoder) -> "PreparedSplit":
    """``split`` whose images become a ``FusionBatch`` of the images and their encoded table."""
    from dataclasses import replace

    from medsight.transforms.fusion_batch import FusionBatch

    if split.clinical is None:
        raise MedsightError(f"the model needs clinical columns {', '.join(encoder.names)}; set data.clinical")
    table = encoder.transform(split.clinical, split.ids)
    return replace(split, images=FusionBatch(split.images, table))  # type: ignore[arg-type]
