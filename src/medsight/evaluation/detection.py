"""The precision-recall figure of the VOC detection metrics (:mod:`medsight.metrics.detection`)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from medsight.utils.figures import styled, to_png


@styled
def plot_detection_pr(metrics: Mapping) -> bytes:
    """Precision-recall curve per class with its AP, from :func:`detection_metrics`."""
    fig = Figure(figsize=(6.0, 4.8))
    ax = fig.add_subplot()
    for name, curve in metrics["curves"].items():
        ap = metrics["ap"][name]
        if math.isnan(ap):
            continue
        recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        ax.step(np.r_[0.0, recall], np.r_[envelope[:1] if len(envelope) else [0.0], envelope], where="pre",
                label=f"{name} (AP {ap:.3f}, n={metrics['n_ground_truth'][name]})")
    thr = metrics["iou_threshold"]
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision (interpolated)",
           title=f"Precision-recall at IoU {thr:g}: mAP {metrics['map']:.3f}")
    if ax.lines:
        ax.legend(loc="lower left")
    return to_png(fig)
