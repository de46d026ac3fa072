"""Contour overlays of segmentations as PNG: each case's image slice with the reference (solid)
and predicted (dashed) outlines, one colour per class. ``segment`` writes them for new images
(no reference), the segmentation report for its best and worst cases."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medsight.utils.figures import message_figure, styled, to_png

_CONTOUR_COLOURS = ("#00c853", "#ffab00", "#2979ff", "#ff4081", "#00e5ff", "#d500f9", "#ffea00", "#ff3d00")


@styled
def overlay_cases_png(
    items: Sequence[Mapping[str, Any]],
    class_names: Sequence[str] | None = None,
    *,
    axis: int = -1,
    columns: int = 4,
) -> bytes:
    """A grid of cases: image slice with the reference (solid) and prediction (dashed) contours.

    Each item holds ``image``, ``ref`` and ``pred`` (same 2D or 3D spatial shape; the image may
    have a leading channel axis, of which the first channel is shown), and optionally
    ``caption`` and ``spacing`` (mm per axis, for the pixel aspect). For 3D, the slice along
    ``axis`` with the most reference foreground is shown (prediction foreground if the
    reference is empty). Arrays are shown as stored (first axis downwards). Each class has its
    colour; ``class_names`` (background first) label them in the legend.
    """
    if not items:
        fig = Figure(figsize=(5, 2.5))
        return message_figure(fig, fig.add_subplot(), "No cases to show")
    panels = [_case_slice(item, axis) for item in items]
    columns = max(1, min(columns, len(items)))
    n_rows = math.ceil(len(items) / columns)
    # Panel height follows the tallest slice's displayed shape, so rows are not padded with white.
    height = max(p[0].shape[0] * p[3] / p[0].shape[1] for p in panels)
    panel = 3.2
    fig = Figure(figsize=(panel * columns, (panel * min(max(height, 0.4), 2.5) + 0.4) * n_rows + 0.5))
    axes = fig.subplots(n_rows, columns, squeeze=False).ravel()
    labels_seen: set[int] = set()
    for ax, slices in zip(axes, panels):
        labels_seen |= _draw_case(ax, *slices)
    for ax in axes[len(items):]:
        ax.set_axis_off()
    handles = [Line2D([], [], color="0.2", lw=1.6, label="reference"),
               Line2D([], [], color="0.2", lw=1.6, ls="--", label="prediction")]
    for label in sorted(labels_seen):
        name = str(class_names[label]) if class_names is not None and label < len(class_names) else f"label {label}"
        handles.append(Line2D([], [], color=_colour(label), lw=3, label=name))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.subplots_adjust(bottom=0.45 / fig.get_figheight(), hspace=0.12, wspace=0.04)
    return to_png(fig)


def _case_slice(item: Mapping[str, Any], axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """The 2D image, reference and prediction to show for one case, the pixel aspect and a title."""
    ref, pred = _array(item["ref"]), _array(item["pred"])
    image = _array(item["image"]).astype(np.float32)
    if image.ndim == ref.ndim + 1:
        image = image[0]
    if not image.shape == ref.shape == pred.shape or ref.ndim not in (2, 3):
        raise ValueError(f"image {image.shape}, reference {ref.shape} and prediction {pred.shape} "
                         "must share one 2D or 3D shape")
    spacing = item.get("spacing")
    title = str(item.get("caption", ""))
    if ref.ndim == 3:
        axis = axis % 3
        source = ref if ref.any() else pred
        index = ref.shape[axis] // 2
        if source.any():
            index = int(np.moveaxis(source > 0, axis, 0).reshape(ref.shape[axis], -1).sum(1).argmax())
        image, ref, pred = (np.take(a, index, axis=axis) for a in (image, ref, pred))
        spacing = None if spacing is None else [s for i, s in enumerate(spacing) if i != axis]
        title += f" (slice {index})"
    aspect = float(spacing[0]) / float(spacing[1]) if spacing is not None else 1.0
    return image, ref, pred, aspect, title


def _draw_case(ax: Any, image: np.ndarray, ref: np.ndarray, pred: np.ndarray, aspect: float, title: str) -> set[int]:
    """Draw one case slice into ``ax``; return the labels whose contours were drawn."""
    lo, hi = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", aspect=aspect)
    drawn: set[int] = set()
    for mask, style in ((ref, "solid"), (pred, "dashed")):
        for label in np.unique(mask[mask > 0]).astype(int):
            ax.contour((mask == label).astype(np.float32), levels=[0.5], colors=[_colour(label)],
                       linestyles=style, linewidths=1.4)
            drawn.add(int(label))
    ax.set_title(title, fontsize=9, fontweight="normal")
    ax.set_axis_off()
    return drawn


def _colour(label: int) -> str:
    return _CONTOUR_COLOURS[(label - 1) % len(_CONTOUR_COLOURS)]


def _array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
