"""Figures of a box-detection evaluation: precision-recall per class (the VOC metrics of
:mod:`medsight.metrics.detection`) and test images with their true and predicted boxes."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from medsight.utils.figures import message_figure, styled, to_png


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


@styled
def plot_detection_cases(cases: Sequence[Mapping[str, Any]], class_names: Sequence[str], columns: int = 4) -> bytes:
    """A grid of images with their true boxes (solid) and predicted boxes (dashed, with the score),
    one colour per class. Each case holds ``image`` (uint8 ``(3, rows, cols)``), ``truth`` and
    ``truth_labels``, ``boxes``, ``labels`` and ``scores`` (class indices, boxes xyxy in the
    image's pixels) and a ``caption``."""
    if not cases:
        fig = Figure(figsize=(5, 2.5))
        return message_figure(fig, fig.add_subplot(), "No images to show")
    columns = max(1, min(columns, len(cases)))
    n_rows = math.ceil(len(cases) / columns)
    fig = Figure(figsize=(3.2 * columns, 3.4 * n_rows + 0.5))
    axes = fig.subplots(n_rows, columns, squeeze=False).ravel()
    colours = [f"C{k % 10}" for k in range(len(class_names))]
    for ax, case in zip(axes, cases):
        ax.imshow(np.moveaxis(np.asarray(case["image"]), 0, -1), interpolation="nearest")
        for box, k in zip(np.asarray(case["truth"]).reshape(-1, 4), case["truth_labels"]):
            ax.add_patch(_box(box, colours[int(k)], "-"))
        for box, k, score in zip(np.asarray(case["boxes"]).reshape(-1, 4), case["labels"], case["scores"]):
            ax.add_patch(_box(box, colours[int(k)], "--"))
            ax.text(box[0], box[1] - 1, f"{score:.2f}", color=colours[int(k)], fontsize=7, va="bottom")
        ax.set_title(str(case.get("caption", "")), fontsize=8, fontweight="normal")
        ax.set_axis_off()
    for ax in axes[len(cases):]:
        ax.set_axis_off()
    handles = [Line2D([], [], color="0.2", lw=1.6, label="true"),
               Line2D([], [], color="0.2", lw=1.6, ls="--", label="predicted")]
    handles += [Line2D([], [], color=c, lw=3, label=str(n)) for c, n in zip(colours, class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.subplots_adjust(bottom=0.45 / fig.get_figheight(), hspace=0.15, wspace=0.04)
    return to_png(fig)


def _box(box: Sequence[float], colour: str, style: str) -> Rectangle:
    x0, y0, x1, y1 = map(float, box)
    return Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style, linewidth=1.4)
