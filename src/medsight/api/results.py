"""What the Python API returns: one dataclass per task, and typed evaluation metrics.

Every result has ``to_dict()`` (JSON-ready; arrays only when asked), ``to_json()`` and
``_repr_html_`` (a notebook shows the image with its heatmap, mask or boxes, and a table).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medsight.api import display
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, task_named


def jsonable(value: Any) -> Any:
    """``value`` with numpy types as Python ones, NaN as None and paths as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


class _Result:
    """``to_dict`` / ``to_json`` for the dataclasses below (``_fields`` without arrays)."""

    _arrays: tuple[str, ...] = ()

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """The result as plain Python values; ``arrays`` adds the pixel arrays as nested lists."""
        out = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in self._arrays}
        if arrays:
            out.update({k: getattr(self, k) for k in self._arrays})
        return jsonable(out)

    def to_json(self, arrays: bool = False, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(arrays), **kwargs)


@dataclass(repr=False)
class Prediction(_Result):
    """A classification: label, calibrated probabilities, uncertainty and a heatmap (model space)."""

    label: str
    probabilities: dict[str, float]
    uncertainty: float  # normalised entropy of the probabilities, 0 (sure) to 1
    needs_review: bool | None  # above the run's review threshold; None if it has none
    threshold: float | None  # decision threshold for the positive class (binary runs)
    source: str
    heatmap: np.ndarray | None = None  # (*spatial) in [0, 1], model space (None with heatmap=False)
    image: np.ndarray | None = None  # (C, *spatial) the image as the model saw it
    record: dict[str, Any] = field(default_factory=dict)  # everything `medsight predict` records
    similar: list[dict[str, Any]] | None = None  # predict(similar=K, index=...): {case, label, distance}
    _arrays = ("heatmap", "image")

    def __repr__(self) -> str:
        review = ", needs review" if self.needs_review else ""
        return (f"Prediction(label={self.label!r}, p={self.probabilities[self.label]:.3f}, "
                f"uncertainty={self.uncertainty:.3f}{review})")

    def _repr_html_(self) -> str:
        png = display.heatmap_png(self.image, self.heatmap) if self.image is not None else None
        rows = [(name, f"{p:.3f}") for name, p in self.probabilities.items()]
        rows += [("uncertainty", f"{self.uncertainty:.3f}")]
        if self.needs_review is not None:
            rows.append(("needs review", "yes" if self.needs_review else "no"))
        return display.html(f"{self.label} — {Path(self.source).name}", png, ("class", "probability"), rows)


@dataclass(repr=False)
class SegmentationResult(_Result):
    """A segmentation: the label mask on the source image's own grid, and its lesions."""

    mask: np.ndarray  # (*spatial) uint8 labels, the source grid (0 = background)
    affine: np.ndarray  # 4x4 voxel -> patient (mm), the source's
    class_names: list[str]
    lesions: list[dict[str, Any]]  # connected components: class, probability, volume, centre, ...
    voxels_per_class: dict[str, int]
    source: str
    probabilities: np.ndarray | None = None  # (K, *spatial) on the source grid
    image: np.ndarray | None = None  # (C, *spatial) the source image
    _arrays = ("mask", "probabilities", "image")

    def __repr__(self) -> str:
        return (f"SegmentationResult(shape={tuple(self.mask.shape)}, lesions={len(self.lesions)}, "
                f"voxels_per_class={self.voxels_per_class})")

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        out = super().to_dict(arrays)
        out["shape"] = list(self.mask.shape)
        return out

    def _repr_html_(self) -> str:
        png = display.mask_png(self.image, self.mask) if self.image is not None else None
        rows = [(str(i + 1), f"{lesion['class']}, p {lesion['probability']:.2f}")
                for i, lesion in enumerate(self.lesions[:10])]
        title = f"{len(self.lesions)} lesion(s) — {Path(self.source).name}"
        return display.html(title, png, ("lesion", "class, probability"), rows)


@dataclass(repr=False)
class DetectionResult(_Result):
    """Boxes found in an image, in its own pixels: ``boxes`` (N, 4) xmin, ymin, xmax, ymax."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    source: str
    image: np.ndarray | None = None  # (3, rows, cols) uint8
    _arrays = ("image",)

    def __repr__(self) -> str:
        return f"DetectionResult({len(self.labels)} box(es): {self.labels[:5]}{'...' if len(self.labels) > 5 else ''})"

    def _repr_html_(self) -> str:
        png = display.boxes_png(self.image, self.boxes, self.labels) if self.image is not None else None
        rows = [(name, f"{s:.3f}", ", ".join(f"{v:.0f}" for v in box))
                for name, s, box in list(zip(self.labels, self.scores, self.boxes))[:10]]
        return display.html(f"{len(self.labels)} box(es) — {Path(self.source).name}", png,
                            ("class", "score", "box"), rows)


@dataclass(frozen=True)
class Metric:
    """One metric and its 95% bootstrap confidence interval (None where not estimated)."""

    value: float | None
    ci: tuple[float | None, float | None] = (None, None)

    def __str__(self) -> str:
        if self.value is None:
            return "n/a"
        ci = f" [{self.ci[0]:.3f}, {self.ci[1]:.3f}]" if None not in self.ci else ""
        return f"{self.value:.3f}{ci}"


@dataclass(repr=False)
class Evaluation(_Result):
    """A run measured on a split: ``metrics[name]`` is a :class:`Metric`; ``details`` holds
    everything ``metrics.json`` would (confusion matrix, per-class figures, FROC, ...)."""

    task: str
    split: str
    n: int | None
    metrics: dict[str, Metric]
    details: dict[str, Any]
    written: str | None = None  # the folder metrics.json and report.html went to (write=True)

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __repr__(self) -> str:
        shown = "; ".join(f"{k} {v}" for k, v in list(self.metrics.items())[:6])
        return f"Evaluation({self.task}, {self.split}, n={self.n}: {shown})"

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        out = super().to_dict(arrays)
        out["metrics"] = {k: {"value": m.value, "ci": list(m.ci)} for k, m in self.metrics.items()}
        return jsonable(out)

    def _repr_html_(self) -> str:
        rows = [(k, "n/a" if m.value is None else f"{m.value:.3f}",
                 "" if None in m.ci else f"[{m.ci[0]:.3f}, {m.ci[1]:.3f}]") for k, m in self.metrics.items()]
        return display.html(f"{self.task}, {self.split} split (n = {self.n})", None,
                            ("metric", "value", "95% CI"), rows)

    @classmethod
    def from_metrics(cls, raw: dict[str, Any], task: str, written: str | None = None) -> "Evaluation":
        """From the dict ``evaluate_run`` returns for a run of ``task``."""
        raw = jsonable({k: v for k, v in raw.items() if k != "curves"})  # detection: PR curves
        metrics = _HEADLINES[task_named(task).name](raw)
        n = raw.get("n", raw.get("n_images"))
        return cls(task, str(raw.get("split", "")), n, metrics, raw, written)


def _classification_metrics(raw: dict[str, Any]) -> dict[str, Metric]:
    return {name: _metric(raw.get(name), ci) for name, ci in raw.get("ci", {}).items()}


def _segmentation_metrics(raw: dict[str, Any]) -> dict[str, Metric]:
    metrics = {"mean_dice": _metric(raw["mean_dice"]["mean"], raw["mean_dice"].get("ci"))}
    metrics.update({f"dice[{name}]": _metric(d["mean"], d.get("ci")) for name, d in raw["dice"].items()})
    metrics["froc_score"] = _metric((raw.get("froc") or {}).get("score"))
    return metrics


def _detection_metrics(raw: dict[str, Any]) -> dict[str, Metric]:
    ci = raw.get("ci") or {}
    return {"map": _metric(raw.get("map"), ci.get("map")),
            **{f"ap[{name}]": _metric(v, (ci.get("ap") or {}).get(name)) for name, v in raw.get("ap", {}).items()}}


# each task kind's headline metrics (medsight.tasks), from the dict evaluate_run returns
_HEADLINES: dict[str, Callable[[dict[str, Any]], dict[str, Metric]]] = {
    CLASSIFICATION.name: _classification_metrics,
    SEGMENTATION.name: _segmentation_metrics,
    DETECTION.name: _detection_metrics,
}


def _metric(value: Any, ci: Any = None) -> Metric:
    low, high = (ci or [None, None])[:2]
    return Metric(None if value is None else float(value),
                  (None if low is None else float(low), None if high is None else float(high)))
