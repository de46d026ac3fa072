"""Calibration: expected calibration error (ECE) and reliability curves.

Two views of a probabilistic classifier are supported, chosen with ``kind``:

* ``"top-label"`` (default, any number of classes): the confidence is the largest class
  probability and the outcome is whether the arg-max class is correct (Guo et al., 2017).
  It does not depend on any decision threshold and is comparable across tasks.
* ``"positive"`` (binary only): the confidence is ``probs[:, 1]`` and the outcome is
  ``y_true == 1``, i.e. "does a predicted risk of 30% mean 30% of cases are positive?".

Bins are equal-width on [0, 1] and right-closed, exactly as in
:func:`sklearn.calibration.calibration_curve`, so ECE and the curve describe the same bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.calibration import calibration_curve

from medsight.errors import MedsightError

CalibrationKind = Literal["top-label", "positive"]


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin statistics of the non-empty bins, in increasing confidence order."""

    confidence: np.ndarray  # mean predicted confidence in the bin
    observed: np.ndarray  # fraction of positive outcomes (top-label: accuracy) in the bin
    counts: np.ndarray  # cases in the bin
    bin_edges: np.ndarray  # all n_bins + 1 edges, including those of empty bins


def confidence_and_outcome(
    y_true: np.ndarray, probs: np.ndarray, kind: CalibrationKind = "top-label"
) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-case ``(confidence, outcome)`` pair that ``kind`` calibrates."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise MedsightError(
            f"probabilities must have shape (n_cases, n_classes) with n_cases={y_true.shape[0]}, "
            f"got {probs.shape}"
        )
    if kind == "top-label":
        return probs.max(axis=1), (probs.argmax(axis=1) == y_true).astype(np.float64)
    if kind == "positive":
        if probs.shape[1] != 2:
            raise MedsightError(f"kind='positive' needs 2 classes, got {probs.shape[1]}")
        return probs[:, 1], (y_true == 1).astype(np.float64)
    raise MedsightError(f"unknown calibration kind {kind!r}; use 'top-label' or 'positive'")


def bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Index of the equal-width, right-closed bin holding each confidence (as in sklearn)."""
    if n_bins < 1:
        raise MedsightError(f"n_bins must be >= 1, got {n_bins}")
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], confidence)


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10, *, kind: CalibrationKind = "top-label"
) -> float:
    """Expected calibration error: ``sum_b (n_b / N) * |observed_b - confidence_b|``.

    ``y_true`` holds integer labels (N,), ``probs`` class probabilities (N, K).
    Returns 0.0 for perfectly calibrated bins; at most 1.0.
    """
    confidence, outcome = confidence_and_outcome(y_true, probs, kind)
    if confidence.size == 0:
        raise MedsightError("cannot compute calibration error on zero cases")
    ids = bin_ids(confidence, n_bins)
    # n_b/N * |mean(outcome) - mean(conf)| == |sum(outcome) - sum(conf)| / N within each bin.
    gap = np.bincount(ids, weights=outcome - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / confidence.size)


def reliability_curve(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10, *, kind: CalibrationKind = "top-label"
) -> ReliabilityCurve:
    """Observed frequency vs. mean confidence per non-empty bin, plus bin counts for a histogram."""
    confidence, outcome = confidence_and_outcome(y_true, probs, kind)
    if confidence.size == 0:
        raise MedsightError("cannot compute a reliability curve on zero cases")
    observed, mean_conf = calibration_curve(outcome, confidence, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(bin_ids(confidence, n_bins), minlength=n_bins)
    return ReliabilityCurve(
        confidence=mean_conf,
        observed=observed,
        counts=counts[counts > 0],
        bin_edges=np.linspace(0.0, 1.0, n_bins + 1),
    )
