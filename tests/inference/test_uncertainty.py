"""Per-case uncertainty: entropy bounds, members' disagreement, the review threshold."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import MedsightError
from medsight.inference.uncertainty import (
    member_uncertainty,
    needs_review,
    normalised_entropy,
    review_threshold,
    uncertainty_records,
)


@pytest.mark.parametrize("k", [2, 3, 11])
def test_entropy_is_one_for_uniform_and_zero_for_one_hot(k):
    uniform = np.full((1, k), 1.0 / k)
    one_hot = np.eye(k)
    assert normalised_entropy(uniform)[0] == pytest.approx(1.0)
    assert np.allclose(normalised_entropy(one_hot), 0.0)
    rng = np.random.default_rng(k)
    p = rng.dirichlet(np.ones(k), size=200)
    e = normalised_entropy(p)
    assert e.min() >= 0.0 and e.max() <= 1.0
    assert 0.0 < e.mean() < 1.0


def test_entropy_orders_binary_cases_by_closeness_to_half():
    p1 = np.array([0.5, 0.6, 0.8, 0.95, 0.999])
    e = normalised_entropy(np.stack([1 - p1, p1], 1))
    assert np.all(np.diff(e) < 0)
    assert e[0] == pytest.approx(1.0)


def test_members_that_agree_have_no_mutual_information():
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=20)
    stats = member_uncertainty(np.stack([p, p, p]))
    assert np.allclose(stats["mutual_information"], 0.0, atol=1e-12)
    assert np.allclose(stats["variance"], 0.0)
    assert np.allclose(stats["entropy"], normalised_entropy(p))


def test_confident_members_that_disagree_are_all_mutual_information():
    stack = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two sure members, opposite answers
    stats = member_uncertainty(stack)
    assert stats["entropy"][0] == pytest.approx(1.0)
    assert stats["expected_entropy"][0] == pytest.approx(0.0)
    assert stats["mutual_information"][0] == pytest.approx(1.0)
    assert stats["variance"][0] == pytest.approx(0.25)
    with pytest.raises(MedsightError, match="members"):
        member_uncertainty(stack[0])


def test_review_threshold_flags_the_chosen_fraction():
    entropy = np.linspace(0.0, 1.0, 200)
    t = review_threshold(entropy, 0.1)
    assert np.mean(entropy > t) == pytest.approx(0.1, abs=0.01)
    assert needs_review(np.array([0.1, t + 1e-6]), t) == [False, True]
    assert needs_review(np.array([0.1, 0.9]), None) == [None, None]
    with pytest.raises(MedsightError, match="fraction"):
        review_threshold(entropy, 1.5)


def test_records_carry_uncertainty_and_review_flag():
    sure, unsure = [0.99, 0.01], [0.55, 0.45]
    one_view = np.array([[sure, unsure]])
    records = uncertainty_records(one_view, 0.5)
    assert [r["needs_review"] for r in records] == [False, True]
    assert records[0]["uncertainty"] < 0.1 < 0.9 < records[1]["uncertainty"]
    assert records[0]["mutual_information"] is None and records[0]["tta"] is False
    views = np.array([[sure, unsure], [sure, [0.1, 0.9]]])
    records = uncertainty_records(views, None)
    assert records[0]["tta"] is True and records[0]["needs_review"] is None
    assert records[1]["mutual_information"] > records[0]["mutual_information"]
    assert records[1]["variance"] > 0.0
