"""Segmentation metrics per case and class, summaries with bootstrap CIs, and the per-case CSV.

Overlap and surface metrics come from MONAI (``compute_dice``, ``compute_iou``,
``compute_hausdorff_distance``, ``compute_average_surface_distance``), with the voxel spacing
passed through so distances are in millimetres. MONAI answers NaN or inf when a mask is empty;
medsight fixes the conventions instead, so every output is JSON-safe:

=====================  ======  =====  ===============  ================
case                   dice    iou    hd95_mm, msd_mm  rel_volume_error
=====================  ======  =====  ===============  ================
both masks empty       1.0     1.0    0.0              None
only one mask empty    0.0     0.0    None             None if ref empty
=====================  ======  =====  ===============  ================

``hd95_mm`` is MONAI's symmetric 95th-percentile Hausdorff distance (the larger of the two
directed 95th percentiles of edge-voxel distances); ``msd_mm`` is its symmetric mean surface
distance (mean over the edge voxels of both masks). Volumes are in mm³ for 3D maps and mm²
for 2D maps (the key is ``volume_*`` either way).

Example::

    rows = [{"case": cid, **case_metrics(pred, ref, spacing, ["background", "tumour"])}
            for cid, pred, ref, spacing in cases]
    summary = summarize(rows, ["background", "tumour"])
    write_cases_csv(run / "cases_test.csv", rows, ["background", "tumour"])
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
)

from medsight.errors import MedsightError
from medsight.evaluation.bootstrap import check_bootstrap, nanmean, percentile_interval, ratio
from medsight.utils.atomic import write_text

METRICS = (
    "dice", "iou", "hd95_mm", "msd_mm",
    "volume_pred", "volume_ref", "abs_volume_error", "rel_volume_error",
)
_BOTH_EMPTY = {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "msd_mm": 0.0}
_ONE_EMPTY = {"dice": 0.0, "iou": 0.0, "hd95_mm": None, "msd_mm": None}

Metrics = dict[str, dict[str, float | None]]


def case_metrics(
    pred: Any, ref: Any, spacing: Sequence[float], class_names: Sequence[str]
) -> Metrics:
    """Per foreground class of one case: overlap, surface distances (mm) and volumes.

    ``pred`` and ``ref`` are integer label maps of the same 2D or 3D shape (0 = background,
    ``k`` = ``class_names[k]``; a leading channel axis of size 1 is dropped); float maps are
    accepted when they hold whole numbers. ``spacing`` is the voxel size in mm per axis.
    Returns ``{class_name: {metric: value}}`` for ``class_names[1:]`` with the keys in
    :data:`METRICS`; see the module docstring for the empty-mask conventions.
    """
    names = _foreground_names(class_names)
    spacing = _check_spacing(spacing)
    pred_map = _label_map(pred, "prediction", len(spacing), len(names))
    ref_map = _label_map(ref, "reference", len(spacing), len(names))
    if pred_map.shape != ref_map.shape:
        raise MedsightError(f"prediction shape {pred_map.shape} does not match reference shape {ref_map.shape}")
    voxel = float(np.prod(spacing))
    # Metrics only see the union's bounding box (plus MONAI's 1-voxel margin): same values, less work.
    window = _bounding_box((pred_map > 0) | (ref_map > 0), margin=1)
    if window is not None:
        pred_map, ref_map = pred_map[window], ref_map[window]
    return {name: _class_metrics(pred_map == k, ref_map == k, spacing, voxel)
            for k, name in enumerate(names, start=1)}


def summarize(
    rows: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
    *,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Mean, median and percentile-bootstrap CI over cases of every metric of every class.

    ``rows`` are ``{"case": id, **case_metrics(...)}``. None values (a distance to an empty
    mask) are left out of that metric's statistics; ``n`` says how many cases remain. All
    metrics share the same resamples of cases, drawn from ``seed``. ``mean_dice`` is, per
    case, the mean Dice over the foreground classes, summarised the same way. Returns::

        {"per_class": {class: {metric: {"mean", "median", "ci": [lo, hi], "n"}}},
         "mean_dice": {"mean", "median", "ci", "n"}, "n_cases", "n_bootstrap", "ci_level", "seed"}
    """
    names = _foreground_names(class_names)
    if not rows:
        raise MedsightError("no cases to summarise")
    check_bootstrap(n_bootstrap, ci_level)
    table = {name: {m: _column(rows, name, m) for m in METRICS} for name in names}
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n_bootstrap, len(rows)))
    dice = np.stack([table[name]["dice"] for name in names], axis=1)
    per_case_dice = nanmean(dice, axis=1)
    return {
        "per_class": {name: {m: _describe(table[name][m], idx, ci_level) for m in METRICS} for name in names},
        "mean_dice": _describe(per_case_dice, idx, ci_level),
        "n_cases": len(rows),
        "n_bootstrap": int(n_bootstrap),
        "ci_level": float(ci_level),
        "seed": int(seed),
    }


def rank_cases(
    rows: Sequence[Mapping[str, Any]], class_names: Sequence[str], n: int = 3
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The ``n`` best and ``n`` worst rows by mean foreground Dice (best first, worst first).

    For picking the cases to overlay; with fewer than ``2 n`` rows the two lists share rows.
    """
    names = _foreground_names(class_names)
    if not rows:
        return [], []
    score = nanmean(np.stack([_column(rows, name, "dice") for name in names], axis=1), axis=1)
    score = np.where(np.isnan(score), -np.inf, score)
    order = np.argsort(-score, kind="stable")
    n = min(n, len(rows))
    return [rows[i] for i in order[:n]], [rows[i] for i in order[::-1][:n]]


def write_cases_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> None:
    """One row per case: ``case``, then ``<class>_<metric>`` for every class and metric (atomic).

    None is written as an empty cell, so spreadsheets and pandas read it as missing.
    """
    names = _foreground_names(class_names)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", *(f"{name}_{m}" for name in names for m in METRICS)])
    for row in rows:
        values = [_class_of(row, name).get(m) for name in names for m in METRICS]
        writer.writerow([row.get("case", ""), *("" if v is None else repr(v) for v in values)])
    write_text(path, buf.getvalue())


def _class_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], voxel: float) -> dict[str, float | None]:
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    vol_pred, vol_ref = n_pred * voxel, n_ref * voxel
    out: dict[str, float | None]
    if n_pred == 0 and n_ref == 0:
        out = dict(_BOTH_EMPTY)
    elif n_pred == 0 or n_ref == 0:
        out = dict(_ONE_EMPTY)
    else:
        out = _monai_metrics(pred, ref, spacing)
    out.update(
        volume_pred=vol_pred,
        volume_ref=vol_ref,
        abs_volume_error=abs(vol_pred - vol_ref),
        rel_volume_error=abs(vol_pred - vol_ref) / vol_ref if n_ref else None,
    )
    return out


def _monai_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float | None]:
    """MONAI's four metrics of two non-empty binary masks, as (batch 1, channel 1) tensors."""
    p, r = torch.from_numpy(np.ascontiguousarray(pred))[None, None], torch.from_numpy(np.ascontiguousarray(ref))[None, None]
    with warnings.catch_warnings():
        # MONAI 1.5+ passes a deprecated argument to itself inside the distance metrics.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        values = {
            "dice": compute_dice(p, r, include_background=True),
            "iou": compute_iou(p, r, include_background=True),
            "hd95_mm": compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing),
            "msd_mm": compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=spacing),
        }
    return {k: _finite(v.item()) for k, v in values.items()}


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """Slices of the box around ``mask``'s foreground, grown by ``margin``; None if it is empty."""
    box = []
    for axis in range(mask.ndim):
        # One projection per axis: much faster than ndimage.find_objects on large volumes.
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + 1 + margin))
    return tuple(box)


def _label_map(array: Any, what: str, n_spatial: int, n_foreground: int) -> np.ndarray:
    """A validated integer label map with ``n_spatial`` axes."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    a = np.asarray(array)
    if a.ndim == n_spatial + 1 and a.shape[0] == 1:
        a = a[0]  # MONAI-style channel-first single-channel map
    if a.ndim != n_spatial:
        raise MedsightError(f"{what} has shape {a.shape}; expected {n_spatial} spatial axes to match the spacing")
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise MedsightError(f"{what} must be a label map of whole numbers, found fractional or NaN values")
    elif a.dtype.kind not in "iu":
        raise MedsightError(f"{what} must be an integer label map, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > n_foreground):
        bad = a.min() if a.min() < 0 else a.max()
        raise MedsightError(f"{what} contains label {bad:g}; expected 0..{n_foreground} for the given class names")
    return a.astype(np.uint8 if n_foreground < 256 else np.int32)


def _check_spacing(spacing: Sequence[float]) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise MedsightError(f"spacing must be a sequence of numbers, got {spacing!r}") from None
    if len(values) not in (2, 3) or not all(math.isfinite(s) and s > 0 for s in values):
        raise MedsightError(f"spacing must be 2 or 3 positive numbers (mm per axis), got {list(values)}")
    return values  # all floats: MONAI rejects a spacing that mixes ints and floats


def _foreground_names(class_names: Sequence[str]) -> list[str]:
    names = [str(c) for c in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise MedsightError(f"need distinct class names, background first, then at least one class; got {names}")
    return names[1:]


def _class_of(row: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    metrics = row.get(name)
    if not isinstance(metrics, Mapping):
        raise MedsightError(f"case {row.get('case', '?')} has no metrics for class {name!r}")
    return metrics


def _column(rows: Sequence[Mapping[str, Any]], name: str, metric: str) -> np.ndarray:
    """One metric of one class over all rows as floats, NaN for None."""
    values = (_class_of(row, name).get(metric) for row in rows)
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _describe(values: np.ndarray, idx: np.ndarray, level: float) -> dict[str, Any]:
    """Mean, median, bootstrap CI of the mean (resamples ``idx``) and count, ignoring NaN."""
    valid = ~np.isnan(values)
    if not valid.any():
        return {"mean": None, "median": None, "ci": [None, None], "n": 0}
    # Resamples that drew only undefined cases give NaN and are skipped by the interval.
    means = ratio(np.where(valid, values, 0.0)[idx].sum(axis=1), valid[idx].sum(axis=1))
    return {"mean": float(values[valid].mean()), "median": float(np.median(values[valid])),
            "ci": percentile_interval(means, level), "n": int(valid.sum())}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
