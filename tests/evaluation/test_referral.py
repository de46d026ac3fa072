"""Referral curves on constructed cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import MedsightError
from medsight.evaluation.plots import plot_referral
from medsight.evaluation.referral import referral_curve


def _cases():
    """Ten binary cases; the two wrong ones are the most uncertain."""
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    p1 = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.05, 0.95, 0.6, 0.4])  # cases 8 and 9 wrong
    uncertainty = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.05, 0.05, 0.9, 0.8])
    return y, np.stack([1 - p1, p1], 1), uncertainty


def test_referring_the_uncertain_wrong_cases_first_raises_accuracy():
    y, probs, u = _cases()
    curve = referral_curve(y, probs, u, fractions=[0.0, 0.1, 0.2, 0.5])
    assert curve["n_retained"] == [10, 9, 8, 5]
    assert curve["accuracy"] == pytest.approx([0.8, 8 / 9, 1.0, 1.0])
    # AUC of the retained cases: all ten (one of 25 pairs misordered) then perfect once referred
    assert curve["auc"][0] == pytest.approx(24 / 25)
    assert curve["auc"][2] == pytest.approx(1.0)


def test_an_uncertainty_pointing_the_wrong_way_lowers_accuracy():
    y, probs, u = _cases()
    curve = referral_curve(y, probs, -u, fractions=[0.0, 0.2])
    assert curve["accuracy"] == pytest.approx([0.8, 0.75])  # referred two right cases


def test_threshold_and_multiclass():
    y, probs, u = _cases()
    # at threshold 0.65 case 8 (p 0.6) becomes right and case 5 (p 0.7 >= 0.65) stays right
    assert referral_curve(y, probs, u, threshold=0.65, fractions=[0.0])["accuracy"] == [0.9]
    y3 = np.array([0, 1, 2, 2])
    p3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    curve = referral_curve(y3, p3, np.array([0.1, 0.1, 0.1, 0.9]), fractions=[0.0, 0.25])
    assert curve["accuracy"] == [0.75, 1.0] and curve["auc"] is None


def test_ties_are_deterministic_and_one_case_is_always_kept():
    y, probs, _ = _cases()
    flat = np.zeros(10)
    assert referral_curve(y, probs, flat) == referral_curve(y, probs, flat)
    curve = referral_curve(y[:1], probs[:1], flat[:1], fractions=[0.0, 0.9])
    assert curve["n_retained"] == [1, 1]


def test_bad_inputs_are_user_errors():
    y, probs, u = _cases()
    with pytest.raises(MedsightError, match="matching"):
        referral_curve(y, probs, u[:5])
    with pytest.raises(MedsightError, match="fractions"):
        referral_curve(y, probs, u, fractions=[1.0])


def test_referral_plot_is_a_png():
    y, probs, u = _cases()
    png = plot_referral(referral_curve(y, probs, u), flagged_fraction=0.1)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
