"""Evaluation figures, each returned as PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` and rendered by the Agg canvas
instead of through ``pyplot``: nothing enters pyplot's global figure registry, so no
figure needs closing, none can leak, and no GUI backend is ever selected.

Curves that cannot be drawn (e.g. ROC with one class present) become a figure stating
why, so one degenerate split never aborts a whole evaluation report.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
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
from medsight.utils.figures import message_figure, styled, to_png


@styled
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
    return to_png(fig)


@styled
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
            return message_figure(fig, ax, "ROC undefined: only one class present")
        fpr, tpr, _ = roc_curve(y, p[:, 1])
        auc = roc_auc_score(y, p[:, 1])
        ax.plot(fpr, tpr, lw=2, label=f"{class_names[1]}: AUC {auc:.3f}{_ci_text(auc_ci, ci_level)}")
        sens, fp_rate = np.mean(p[pos, 1] >= threshold), np.mean(p[~pos, 1] >= threshold)
        ax.plot(fp_rate, sens, "o", ms=8, mfc="white", mec="C3", mew=2,
                label=f"threshold {threshold:.3g}: sens {sens:.2f}, spec {1 - fp_rate:.2f}")
    else:
        drawn = _per_class_curves(ax, y, p, class_names, _roc_points, "AUC")
        if not drawn:
            return message_figure(fig, ax, "ROC undefined: no class has both positives and negatives")
        if np.unique(y).size == p.shape[1]:
            macro = roc_auc_score(y, p, multi_class="ovr", average="macro")
            ax.plot([], [], " ", label=f"macro AUC {macro:.3f}{_ci_text(auc_ci, ci_level)}")
    ax.set(xlabel="1 − specificity (false-positive rate)", ylabel="Sensitivity (true-positive rate)")
    ax.legend(loc="lower right")
    return to_png(fig)


@styled
def plot_precision_recall(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *, threshold: float = 0.5
) -> bytes:
    """Precision-recall curve(s) with average precision; binary marks the operating point."""
    y, p = check_predictions(y_true, probs, class_names)
    fig, ax = _square_axes("Precision-recall" if p.shape[1] == 2 else "Precision-recall (one-vs-rest)")
    if p.shape[1] == 2:
        pos = y == 1
        if not pos.any():
            return message_figure(fig, ax, "Precision-recall undefined: no positive cases")
        precision, recall, _ = precision_recall_curve(y, p[:, 1])
        ap = average_precision_score(y, p[:, 1])
        ax.plot(recall, precision, lw=2, drawstyle="steps-post", label=f"{class_names[1]}: AP {ap:.3f}")
        ax.axhline(pos.mean(), ls="--", lw=1, color="0.6", label=f"prevalence {pos.mean():.2f}")
        called = p[:, 1] >= threshold
        if called.any():
            ax.plot(np.mean(called[pos]), np.mean(pos[called]), "o", ms=8, mfc="white", mec="C3", mew=2,
                    label=f"threshold {threshold:.3g}")
    elif not _per_class_curves(ax, y, p, class_names, _pr_points, "AP", steps=True):
        return message_figure(fig, ax, "Precision-recall undefined: no class has positive cases")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (positive predictive value)")
    ax.legend(loc="lower left")
    return to_png(fig)


@styled
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
    return to_png(fig)


@styled
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
    return to_png(fig)

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


def _ci_text(ci: Sequence[float | None] | None, level: float) -> str:
    if ci is None or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return ""
    return f" ({level:.0%} CI {ci[0]:.3f}–{ci[1]:.3f})"
