"""Classification metrics with percentile-bootstrap confidence intervals.

Point estimates come from scikit-learn. The bootstrap recomputes every metric on
``n_bootstrap`` resamples of the cases at once (confusion matrices by ``bincount``,
ROC-AUC by mid-ranks), because calling scikit-learn thousands of times is too slow;
the tests check that both paths agree.

Undefined metrics (e.g. AUC with one class, precision with no positive predictions) are
``None`` rather than NaN so the result can be written as JSON. Macro averages skip
classes for which the per-class value is undefined, as scikit-learn does with
``zero_division=np.nan``.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from medsight.errors import MedsightError
from medsight.evaluation.bootstrap import check_bootstrap, nanmean, percentile_interval, ratio, resample_blocks
from medsight.evaluation.calibration import (
    bin_ids,
    confidence_and_outcome,
    expected_calibration_error,
)
from medsight.metrics.classification import auc_score

METRICS = (
    "accuracy", "balanced_accuracy", "sensitivity", "specificity",
    "precision", "f1", "auc", "ece", "brier",
)
ECE_BINS = 10


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    threshold: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Metrics of a K-class probabilistic classifier, with bootstrap CIs, as a JSON-ready dict.

    Binary (K=2): class 1 is positive and a case is predicted positive if
    ``probs[:, 1] >= threshold`` (default 0.5); sensitivity, specificity, precision and F1
    refer to the positive class. Multiclass: the arg-max class is predicted, ``threshold``
    is ignored (recorded as None) and those four metrics are macro averages (specificity
    one-vs-rest). ``auc`` is ROC-AUC (multiclass: one-vs-rest macro). ``ece`` uses the
    top-label confidence in 10 equal-width bins for every K, so it does not depend on the
    threshold. ``brier`` follows scikit-learn: range [0, 1] for binary, [0, 2] for multiclass.

    ``ci`` maps each metric to a percentile-bootstrap ``[low, high]`` interval over cases
    (resamples where the metric is undefined are skipped); ``[None, None]`` if undefined.
    """
    y, probs = check_predictions(y_true, probs, class_names)
    check_bootstrap(n_bootstrap, ci_level)
    k = probs.shape[1]
    if k == 2:
        threshold = 0.5 if threshold is None else float(threshold)
        if not np.isfinite(threshold):
            raise MedsightError(f"threshold must be a finite number, got {threshold}")
    else:
        threshold = None
    pred = predict_labels(probs, threshold)

    point = _point_metrics(y, probs, pred)
    boot = _bootstrap_metrics(y, probs, pred, n_bootstrap, np.random.default_rng(seed))
    ci = {
        name: [None, None] if point[name] is None else percentile_interval(boot[name], ci_level)
        for name in METRICS
    }
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        prec, rec, f1, support = precision_recall_fscore_support(
            y, pred, labels=labels, zero_division=np.nan
        )
    names = [str(c) for c in class_names]
    return {
        **point,
        "ci": ci,
        "ci_level": float(ci_level),
        "n_bootstrap": int(n_bootstrap),
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "class_names": names,
        "threshold": threshold,
        "n": int(y.size),
        "n_per_class": {name: int(c) for name, c in zip(names, np.bincount(y, minlength=k))},
        "per_class": {
            name: {"precision": _to_float(prec[i]), "recall": _to_float(rec[i]),
                   "f1": _to_float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(names)
        },
    }


def predict_labels(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted labels: ``probs[:, 1] >= threshold`` for binary, arg-max otherwise."""
    if probs.shape[1] == 2:
        return (probs[:, 1] >= (0.5 if threshold is None else threshold)).astype(np.int64)
    return probs.argmax(axis=1)


def threshold_for_sensitivity(y_true: np.ndarray, p_pos: np.ndarray, target: float) -> float:
    """Highest threshold ``t`` at which ``p_pos >= t`` has sensitivity >= ``target`` on these data."""
    y = np.asarray(y_true)
    p = np.asarray(p_pos, dtype=np.float64)
    if y.ndim != 1 or p.shape != y.shape:
        raise MedsightError(f"labels {y.shape} and scores {p.shape} must be 1-D of equal length")
    if not np.isfinite(p).all():
        raise MedsightError("scores contain NaN or infinite values")
    if not np.isin(y, (0, 1)).all():
        raise MedsightError("labels must be 0 (negative) or 1 (positive)")
    if not 0.0 < target <= 1.0:
        raise MedsightError(f"target sensitivity must be in (0, 1], got {target}")
    if not (y == 1).any():
        raise MedsightError("cannot choose a threshold for a target sensitivity: no positive cases")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # FPR is undefined without negatives
        _, tpr, thresholds = roc_curve(y, p, pos_label=1, drop_intermediate=False)
    # Thresholds decrease and TPR never does, so the first one reaching the target is the highest.
    return float(thresholds[np.argmax(tpr >= target)])


def check_predictions(
    y_true: Any, probs: Any, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels (N,) and class probabilities (N, K); return them as int64 and float64.

    Raises :class:`MedsightError` for mismatched shapes, non-finite or out-of-range
    probabilities, rows not summing to 1, labels outside ``0..K-1`` or, if given, a wrong
    number of (or duplicate) class names.
    """
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MedsightError(f"probabilities are not numeric: {exc}") from None
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] < 2:
        raise MedsightError(f"probabilities must have shape (n_cases, n_classes >= 2), got {p.shape}")
    n, k = p.shape
    if y.ndim != 1 or y.shape[0] != n:
        raise MedsightError(f"got {y.shape[0] if y.ndim else 0} label(s) for {n} probability row(s)")
    if n == 0:
        raise MedsightError("no cases to evaluate")
    if class_names is not None and (len(class_names) != k or len(set(class_names)) != k):
        raise MedsightError(f"need {k} distinct class names for {k} probability columns, got {list(class_names)}")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        raise MedsightError(f"probabilities contain NaN or infinite values (first at case {int(np.argmax(bad))})")
    if (p < -1e-6).any() or (p > 1 + 1e-6).any():
        raise MedsightError("probabilities must lie in [0, 1]; pass softmax outputs, not logits")
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-2  # loose: meant to catch unnormalised scores, not rounding
    if off.any():
        i = int(np.argmax(off))
        raise MedsightError(f"probability rows must sum to 1 (case {i} sums to {sums[i]:.4f})")
    p = np.clip(p, 0.0, 1.0)
    if not np.allclose(p.sum(axis=1), 1.0):
        # Rounded outputs fail scikit-learn's sum check for multiclass AUC. Renormalise only
        # then: dividing float32 rows by sums of 1 +- 1e-7 would break exact ties in the ranking.
        p /= p.sum(axis=1, keepdims=True)
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise MedsightError(f"labels must be integers 0..{k - 1}, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= k:
        raise MedsightError(f"labels must be in 0..{k - 1} for {k} classes, found {int(y.min())}..{int(y.max())}")
    return y, p


def _point_metrics(y: np.ndarray, probs: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    k = probs.shape[1]
    labels = list(range(k))
    all_present = np.unique(y).size == k  # AUC needs every class among the labels
    with warnings.catch_warnings():
        # Undefined metrics are reported as None; scikit-learn's warnings about them are noise.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        if k == 2:
            avg: dict[str, Any] = {"average": "binary", "pos_label": 1}
            specificity = recall_score(y, pred, pos_label=0, zero_division=np.nan)
            auc = roc_auc_score(y, probs[:, 1]) if all_present else np.nan
            brier = brier_score_loss(y, probs[:, 1], pos_label=1)
        else:
            avg = {"average": "macro", "labels": labels}
            mcm = multilabel_confusion_matrix(y, pred, labels=labels)
            specificity = nanmean(ratio(mcm[:, 0, 0], mcm[:, 0, 0] + mcm[:, 0, 1]), axis=0)
            auc = auc_score(y, probs)  # one-vs-rest, macro over the classes present in y
            # Its sum check (rtol ~1e-8) rejects float32 rounding; the renormalised copy changes nothing else.
            brier = brier_score_loss(y, probs / probs.sum(axis=1, keepdims=True), labels=labels)
        values = {
            "accuracy": accuracy_score(y, pred),
            "balanced_accuracy": balanced_accuracy_score(y, pred),
            "sensitivity": recall_score(y, pred, zero_division=np.nan, **avg),
            "specificity": specificity,
            "precision": precision_score(y, pred, zero_division=np.nan, **avg),
            "f1": f1_score(y, pred, zero_division=np.nan, **avg),
            "auc": auc,
            "ece": expected_calibration_error(y, probs, ECE_BINS),
            "brier": brier,
        }
    return {name: _to_float(values[name]) for name in METRICS}


def _bootstrap_metrics(
    y: np.ndarray, probs: np.ndarray, pred: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every metric on ``n_bootstrap`` resamples of the cases (with replacement); NaN if undefined."""
    parts = [resample_metrics(y, probs, pred, idx) for idx in resample_blocks(y.size, n_bootstrap, rng)]
    if not parts:
        return {name: np.empty(0) for name in METRICS}
    return {name: np.concatenate([p[name] for p in parts]) for name in METRICS}


def resample_metrics(y: np.ndarray, probs: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric for every row of case indices ``idx`` (B, n), vectorised; NaN where undefined.

    With ``idx = np.arange(n)[None]`` this reproduces the scikit-learn point estimates.
    """
    b, n = idx.shape
    k = probs.shape[1]
    t, p = y[idx], pred[idx]
    # One K x K confusion matrix per resample from a single bincount over offset codes.
    codes = (np.arange(b)[:, None] * k * k + t * k + p).ravel()
    cm = np.bincount(codes, minlength=b * k * k).reshape(b, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    tn = n - tp - fp - fn
    recall, precision = ratio(tp, tp + fn), ratio(tp, tp + fp)
    specificity, f1 = ratio(tn, tn + fp), ratio(2 * tp, 2 * tp + fp + fn)
    out = {"accuracy": tp.sum(axis=1) / n, "balanced_accuracy": nanmean(recall, axis=1)}
    if k == 2:
        out.update(sensitivity=recall[:, 1], specificity=recall[:, 0], precision=precision[:, 1], f1=f1[:, 1])
        out["auc"] = _rank_auc(probs[idx, 1], t == 1)
    else:
        out.update(sensitivity=nanmean(recall, axis=1), specificity=nanmean(specificity, axis=1),
                   precision=nanmean(precision, axis=1), f1=nanmean(f1, axis=1))
        # over the classes present in the split, as the point estimate (a resample that lacks
        # one of them averages over the rest)
        present = [c for c in range(k) if 0 < int((y == c).sum()) < len(y)]
        out["auc"] = nanmean(np.stack([_rank_auc(probs[idx, c], t == c) for c in present]), axis=0)

    confidence, outcome = confidence_and_outcome(y, probs)
    bins = (np.arange(b)[:, None] * ECE_BINS + bin_ids(confidence, ECE_BINS)[idx]).ravel()
    gap = np.bincount(bins, weights=(outcome - confidence)[idx].ravel(), minlength=b * ECE_BINS)
    out["ece"] = np.abs(gap.reshape(b, ECE_BINS)).sum(axis=1) / n

    onehot = np.eye(k)[y]
    per_case = ((probs - onehot) ** 2).sum(axis=1)
    if k == 2:
        per_case /= 2  # scikit-learn scales binary Brier to [0, 1]
    out["brier"] = per_case[idx].mean(axis=1)
    return out


def _rank_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC per row as the Mann-Whitney U statistic with mid-ranks for ties."""
    ranks = rankdata(scores, axis=1)
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    u = (ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2
    return ratio(u, n_pos * n_neg)


def _to_float(x: Any) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x
