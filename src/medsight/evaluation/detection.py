"""Box-detection metrics with confidence intervals: VOC AP per class and mAP
(:mod:`medsight.metrics.detection`), each with a percentile-bootstrap interval over images.

An image is the unit that is resampled, as a case is for classification and segmentation: its
detections and objects travel together. Each detection is matched once, within its own image;
a resample then only reweights the ranked list (an image drawn twice counts its true and false
positives and its objects twice), so a thousand resamples cost a few array operations per class.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from medsight.evaluation.bootstrap import (
    check_bootstrap,
    nanmean,
    percentile_interval,
    resample_blocks,
    resample_counts,
)
from medsight.metrics.detection import Boxes, ClassMatches, average_precision, match_detections, summarize_matches


def detection_metrics_with_ci(predictions: Sequence[Boxes], targets: Sequence[Boxes], class_names: Sequence[str],
                              iou_threshold: float = 0.5, *, n_bootstrap: int = 1000, seed: int = 0,
                              ci_level: float = 0.95) -> dict[str, Any]:
    """:func:`~medsight.metrics.detection.detection_metrics` plus ``ci`` ``{"map": [lo, hi],
    "ap": {class: [lo, hi]}}`` over ``n_bootstrap`` resamples of the images, ``ci_level``,
    ``n_bootstrap`` and ``n`` (images). A class without objects has no AP and ``[None, None]``;
    a resample without objects of a class leaves it out of that resample's mAP."""
    check_bootstrap(n_bootstrap, ci_level)
    matches = match_detections(predictions, targets, len(class_names), iou_threshold)
    metrics = summarize_matches(matches, class_names, iou_threshold)
    ap = bootstrap_ap(matches, n_bootstrap, np.random.default_rng(seed))
    metrics["ci"] = {
        "map": [None, None] if math.isnan(metrics["map"]) else percentile_interval(nanmean(ap, axis=1), ci_level),
        "ap": {name: [None, None] if math.isnan(metrics["ap"][name]) else percentile_interval(ap[:, k], ci_level)
               for k, name in enumerate(class_names)},
    }
    metrics.update({"ci_level": float(ci_level), "n_bootstrap": int(n_bootstrap), "n": len(targets)})
    return metrics


def bootstrap_ap(matches: Sequence[ClassMatches], n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """AP of every class on ``n_bootstrap`` resamples of the images: ``(n_bootstrap, classes)``,
    NaN where a resample holds no object of the class."""
    if not matches:
        return np.zeros((n_bootstrap, 0))
    n_images = len(matches[0].n_gt)
    widest = max([n_images] + [len(m.image) for m in matches])
    blocks = []
    for idx in resample_blocks(n_images, n_bootstrap, rng, row_cost=widest):
        weights = resample_counts(idx, n_images)
        columns = []
        for m in matches:
            recall, precision, n_gt = m.curves(weights)
            columns.append(np.where(n_gt > 0, average_precision(recall, precision), np.nan))
        blocks.append(np.stack(columns, axis=1))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(matches)))
