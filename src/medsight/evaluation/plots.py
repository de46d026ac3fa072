"""Evaluation figures, each returned as PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` and rendered by the Agg canvas
instead of through ``pyplot``: nothing enters pyplot's global figure registry, so no
figure needs closing, none can leak, and no GUI backend is ever selected.

Curves that cannot be drawn (e.g. ROC with one class present) become a figure stating
why, so one degenerate split never aborts a whole evaluation report.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from medsight.evaluation.calibration import (
    CalibrationKind,
    confidence_and_outcome,
    expected_calibration_error,
    reliability_curve,
)
from medsight.evaluation.classification import check_predictions

_STYLE = {
    "savefig.dpi": 120,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
}
_style = mpl.rc_context(_STYLE)


@_style
def plot_confusion_matrix(cm: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str]) -> bytes:
    """Confusion matrix (rows = true class) with counts and row percentages in every cell."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} class names")
    totals = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    side = min(3.0 + 0.8 * k, 14.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    # Colour by row fraction so rare classes are as readable as common ones.
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.grid(False)
    fontsize = max(6.0, 11.0 - 0.4 * k)
    for i in range(k):
        for j in range(k):
            pct = f"{100 * frac[i, j]:.1f}%" if totals[i, 0] else "–"
            ax.text(j, i, f"{cm[i, j]}\n{pct}", ha="center", va="center", fontsize=fontsize,
                    color="white" if frac[i, j] > 0.55 else "#1f2328")
    rotate = max(len(str(c)) for c in class_names) > 6 or k > 6
    ax.set_xticks(range(k), labels=[str(c) for c in class_names],
                  rotation=35 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(k), labels=[str(c) for c in class_names])
    ax.set(xlabel="Predicted class", ylabel="True class", title=f"Confusion matrix (n = {int(cm.sum())})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Fraction of true class")
    return _to_png(fig)


@_style
def plot_roc(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    auc_ci: Sequence[float | None] | None = None,
    *,
    threshold: float = 0.5,
    ci_level: float = 0.95,
) -> bytes:
    """ROC curve(s). Binary: positive class with the operating point at ``threshold``.

    Multiclass: one one-vs-rest curve per class. ``auc_ci`` is the interval of the
    (binary or macro) AUC shown in the legend.
    """
    y, p = check_predictions(y_true, probs, class_names)
    fig, ax = _square_axes("ROC curve" if p.shape[1] == 2 else "ROC curves (one-vs-rest)")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="chance")
    if p.shape[1] == 2:
        pos = y == 1
        if pos.all() or not pos.any():
            return _message_figure(fig, ax, "ROC undefined: only one class present")
        fpr, tpr, _ = roc_curve(y, p[:, 1])
        auc = roc_auc_score(y, p[:, 1])
        ax.plot(fpr, tpr, lw=2, label=f"{class_names[1]}: AUC {auc:.3f}{_ci_text(auc_ci, ci_level)}")
        sens, fp_rate = np.mean(p[pos, 1] >= threshold), np.mean(p[~pos, 1] >= threshold)
        ax.plot(fp_rate, sens, "o", ms=8, mfc="white", mec="C3", mew=2,
                label=f"threshold {threshold:.3g}: sens {sens:.2f}, spec {1 - fp_rate:.2f}")
    else:
        drawn = _per_class_curves(ax, y, p, class_names, _roc_points, "AUC")
        if not drawn:
            return _message_figure(fig, ax, "ROC undefined: no class has both positives and negatives")
        if np.unique(y).size == p.shape[1]:
            macro = roc_auc_score(y, p, multi_class="ovr", average="macro")
            ax.plot([], [], " ", label=f"macro AUC {macro:.3f}{_ci_text(auc_ci, ci_level)}")
    ax.set(xlabel="1 − specificity (false-positive rate)", ylabel="Sensitivity (true-positive rate)")
    ax.legend(loc="lower right")
    return _to_png(fig)


@_style
def plot_precision_recall(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *, threshold: float = 0.5
) -> bytes:
    """Precision-recall curve(s) with average precision; binary marks the operating point."""
    y, p = check_predictions(y_true, probs, class_names)
    fig, ax = _square_axes("Precision-recall" if p.shape[1] == 2 else "Precision-recall (one-vs-rest)")
    if p.shape[1] == 2:
        pos = y == 1
        if not pos.any():
            return _message_figure(fig, ax, "Precision-recall undefined: no positive cases")
        precision, recall, _ = precision_recall_curve(y, p[:, 1])
        ap = average_precision_score(y, p[:, 1])
        ax.plot(recall, precision, lw=2, drawstyle="steps-post", label=f"{class_names[1]}: AP {ap:.3f}")
        ax.axhline(pos.mean(), ls="--", lw=1, color="0.6", label=f"prevalence {pos.mean():.2f}")
        called = p[:, 1] >= threshold
        if called.any():
            ax.plot(np.mean(called[pos]), np.mean(pos[called]), "o", ms=8, mfc="white", mec="C3", mew=2,
                    label=f"threshold {threshold:.3g}")
    elif not _per_class_curves(ax, y, p, class_names, _pr_points, "AP", steps=True):
        return _message_figure(fig, ax, "Precision-recall undefined: no class has positive cases")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (positive predictive value)")
    ax.legend(loc="lower left")
    return _to_png(fig)


@_style
def plot_calibration(
    y_true: np.ndarray,
    probs: np.ndarray,
    ece: float | None = None,
    *,
    n_bins: int = 10,
    kind: CalibrationKind = "top-label",
) -> bytes:
    """Reliability diagram with the diagonal, above a histogram of the confidences.

    ``kind`` is as in :mod:`medsight.evaluation.calibration`; ``ece`` is computed if omitted.
    """
    y, p = check_predictions(y_true, probs)
    if ece is None:
        ece = expected_calibration_error(y, p, n_bins, kind=kind)
    curve = reliability_curve(y, p, n_bins, kind=kind)
    confidence, _ = confidence_and_outcome(y, p, kind)
    fig = Figure(figsize=(5.5, 6.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="perfect calibration")
    top.plot(curve.confidence, curve.observed, "o-", lw=2, ms=5, label=f"model (ECE {ece:.3f})")
    top.set(xlim=(0, 1), ylim=(0, 1.02), title="Reliability diagram",
            ylabel="Observed accuracy" if kind == "top-label" else "Observed positive fraction")
    top.legend(loc="upper left")
    bottom.hist(confidence, bins=curve.bin_edges, color="C0", alpha=0.75, edgecolor="white")
    bottom.set(ylabel="Cases", xlabel="Confidence (predicted-class probability)" if kind == "top-label"
               else "Predicted probability of the positive class")
    fig.align_ylabels([top, bottom])
    return _to_png(fig)


@_style
def plot_training_curves(history: Sequence[Mapping[str, Any]], monitor: str = "val_loss") -> bytes:
    """Losses, validation metrics (``val_*``) and learning rate per epoch; missing keys are gaps.

    A dotted line marks the best epoch of ``monitor`` (minimised if it is a loss, else maximised).
    """
    rows = [r for r in history if isinstance(r, Mapping)]
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if _has_numbers(rows, k)]  # first-seen order
    losses = [k for k in keys if k == "loss" or k.endswith("_loss")]
    metrics = [k for k in keys if k.startswith("val_") and k not in losses]
    # (keys, relative height, y label); the learning-rate panel is deliberately small.
    panels = [(ks, h, label) for ks, h, label in (
        (losses, 3.0, "Loss"), (metrics, 3.0, "Validation metric"), (["lr"] if "lr" in keys else [], 1.4, "Learning rate")
    ) if ks]
    if not panels:
        fig = Figure(figsize=(7, 3))
        return _message_figure(fig, fig.add_subplot(), "No training history to plot")
    epochs = np.array([_number(r.get("epoch")) for r in rows])
    if np.isnan(epochs).any():
        epochs = np.arange(1, len(rows) + 1, dtype=float)
    fig = Figure(figsize=(7.5, 1.0 + sum(h for _, h, _ in panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [h for _, h, _ in panels]})[:, 0]
    for ax, (panel_keys, _, ylabel) in zip(axes, panels):
        for key in panel_keys:
            values = np.array([_number(r.get(key)) for r in rows])
            ok = np.isfinite(values)  # plot only recorded epochs so sparse metrics still form lines
            ax.plot(epochs[ok], values[ok], "o-" if ok.sum() <= 30 else "-", ms=3, lw=1.6,
                    label=key.replace("_", " "))
            if key == "lr" and values[ok].min() > 0:
                ax.set_yscale("log")
                # Ticks at 1, 2 and 5 per decade: labelled but not crowding the small panel.
                ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.set_ylabel(ylabel)
        if panel_keys != ["lr"]:
            ax.legend(loc="best")
    if monitor in keys:
        tracked = np.array([_number(r.get(monitor)) for r in rows])
        if np.isfinite(tracked).any():
            pick = np.nanargmin if monitor.endswith("loss") else np.nanargmax
            best = epochs[pick(tracked)]
            for ax in axes:
                ax.axvline(best, ls=":", lw=1, color="0.45")
            # Label on the side of the line with more room so it stays inside the axes.
            left = best > (epochs.min() + epochs.max()) / 2
            axes[0].annotate(f"best {monitor.replace('_', ' ')} (epoch {best:g})", (best, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(-4 if left else 4, -12), textcoords="offset points",
                             ha="right" if left else "left", fontsize=8, color="0.35")
    axes[0].set_title("Training curves")
    axes[-1].set_xlabel("Epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.align_ylabels(axes)
    return _to_png(fig)



@_style
def plot_referral(curve: Mapping[str, Any], flagged_fraction: float | None = None) -> bytes:
    """Accuracy (and binary AUC) of the retained cases against the fraction referred to a human.

    ``curve`` is :func:`medsight.evaluation.referral.referral_curve`'s result; the dashed line is
    what referring at random keeps (the accuracy with nothing referred); ``flagged_fraction``
    marks the share of cases the review threshold flags.
    """
    fractions = np.asarray(curve["fraction_referred"], dtype=float)
    fig = Figure(figsize=(6.0, 4.6))
    ax = fig.add_subplot()
    ax.plot(fractions, curve["accuracy"], "o-", lw=2, ms=4, label="accuracy of retained cases")
    ax.axhline(curve["accuracy"][0], ls="--", lw=1, color="0.6", label="referring at random")
    if curve.get("auc") is not None:
        auc = np.array([np.nan if a is None else a for a in curve["auc"]], dtype=float)
        ax.plot(fractions, auc, "s-", lw=1.6, ms=4, color="C2", label="AUC of retained cases")
    if flagged_fraction is not None:
        ax.axvline(flagged_fraction, ls=":", lw=1.2, color="C3",
                   label=f"review threshold ({flagged_fraction:.0%} flagged)")
    ax.set(xlabel="Fraction of cases referred (most uncertain first)", ylabel="Retained-case metric",
           title="Referral curve", xlim=(-0.01, max(0.51, float(fractions.max()) + 0.01)))
    ax.legend(loc="lower right")
    return _to_png(fig)

def _per_class_curves(ax: Any, y: np.ndarray, p: np.ndarray, class_names: Sequence[str],
                      points: Any, score_name: str, steps: bool = False) -> int:
    """Draw one one-vs-rest curve per class that has the cases it needs; return how many."""
    drawn = 0
    for c, name in enumerate(class_names):
        result = points(y == c, p[:, c])
        if result is not None:
            xs, ys, score = result
            ax.plot(xs, ys, lw=1.6, drawstyle="steps-post" if steps else "default",
                    label=f"{name}: {score_name} {score:.3f}")
            drawn += 1
    return drawn


def _roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    if positive.all() or not positive.any():
        return None
    fpr, tpr, _ = roc_curve(positive, score)
    return fpr, tpr, float(roc_auc_score(positive, score))


def _pr_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    if not positive.any():
        return None
    precision, recall, _ = precision_recall_curve(positive, score)
    return recall, precision, float(average_precision_score(positive, score))


def _square_axes(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(5.8, 5.4))
    ax = fig.add_subplot()
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), title=title)
    ax.set_aspect("equal")
    return fig, ax


def _message_figure(fig: Figure, ax: Any, message: str) -> bytes:
    """Replace the axes' content by a centred explanation (for curves that cannot be drawn)."""
    title = ax.get_title()
    ax.cla()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11, color="0.3",
            transform=ax.transAxes)
    return _to_png(fig)


def _ci_text(ci: Sequence[float | None] | None, level: float) -> str:
    if ci is None or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return ""
    return f" ({level:.0%} CI {ci[0]:.3f}–{ci[1]:.3f})"


def _number(value: Any) -> float:
    """A finite-or-NaN float for numeric history values; NaN for missing or non-numeric ones."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return math.nan
    return float(value)


def _has_numbers(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(math.isfinite(_number(r.get(key))) for r in rows)


def _to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # render with Agg whatever the global backend is
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    return buf.getvalue()
