"""Expected calibration error and reliability curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from medsight.errors import MedsightError
from medsight.evaluation.calibration import (
    expected_calibration_error,
    reliability_curve,
)


def _binary_cases(confidence: float, n: int, n_correct: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cases predicted positive with probability ``confidence``, ``n_correct`` truly positive."""
    y = np.r_[np.ones(n_correct, dtype=int), np.zeros(n - n_correct, dtype=int)]
    return y, np.tile([1 - confidence, confidence], (n, 1))


def test_ece_is_zero_for_perfectly_calibrated_bins():
    y80, p80 = _binary_cases(0.8, 10, 8)
    y65, p65 = _binary_cases(0.65, 20, 13)
    y, probs = np.r_[y80, y65], np.r_[p80, p65]
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_zero_for_calibrated_multiclass_bin():
    probs = np.tile([0.7, 0.2, 0.1], (10, 1))
    y = np.array([0] * 7 + [1, 2, 1])
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_large_for_overconfident_predictions():
    y, probs = _binary_cases(0.99, 100, 50)
    assert expected_calibration_error(y, probs) == pytest.approx(0.49)


def test_ece_weights_bins_by_size():
    y_good, p_good = _binary_cases(0.8, 30, 24)  # calibrated
    y_bad, p_bad = _binary_cases(0.95, 10, 5)  # gap 0.45
    ece = expected_calibration_error(np.r_[y_good, y_bad], np.r_[p_good, p_bad])
    assert ece == pytest.approx(10 / 40 * 0.45)


def test_ece_matches_reliability_curve_and_sklearn_bins(make_scores):
    y, probs = make_scores(500, k=2, seed=0, separation=3.0)
    curve = reliability_curve(y, probs, n_bins=10)
    correct = (probs.argmax(axis=1) == y).astype(int)
    observed, mean_conf = calibration_curve(correct, probs.max(axis=1), n_bins=10)
    np.testing.assert_allclose(curve.observed, observed)
    np.testing.assert_allclose(curve.confidence, mean_conf)
    assert curve.counts.sum() == y.size
    ece = np.sum(curve.counts / y.size * np.abs(curve.observed - curve.confidence))
    assert expected_calibration_error(y, probs, n_bins=10) == pytest.approx(ece)


def test_positive_class_calibration():
    # Predicted risk 0.3 with 30% positives is calibrated for the positive class.
    y = np.r_[np.ones(3, dtype=int), np.zeros(7, dtype=int)]
    probs = np.tile([0.7, 0.3], (10, 1))
    assert expected_calibration_error(y, probs, kind="positive") == pytest.approx(0.0, abs=1e-12)
    curve = reliability_curve(y, probs, kind="positive")
    np.testing.assert_allclose([curve.confidence[0], curve.observed[0], curve.counts[0]], [0.3, 0.3, 10])


def test_positive_kind_needs_two_classes():
    with pytest.raises(MedsightError, match="2 classes"):
        expected_calibration_error(np.array([0, 1, 2]), np.eye(3), kind="positive")
