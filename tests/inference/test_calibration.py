"""Temperature scaling: recovers a known over-confidence, lowers ECE, keeps every decision."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from medsight.errors import InputFileError, MedsightError
from medsight.evaluation.calibration import expected_calibration_error
from medsight.inference.calibration import (
    CALIBRATION_FILE,
    T_MIN,
    calibrated_softmax,
    fit_temperature,
    nll,
    read_calibration,
    rescale_threshold,
)

OVERCONFIDENCE = 5.0


def calibrated_problem(n: int = 6000, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is exactly calibrated: each label is drawn from softmax(logits)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 1.5
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
    return logits, labels


@pytest.mark.parametrize("k", [2, 3])
def test_over_confident_model_recovers_its_temperature_and_loses_its_ece(k):
    logits, labels = calibrated_problem(k=k)
    over = logits * OVERCONFIDENCE  # the same decisions, five times too sure
    t = fit_temperature(over, labels)
    assert t == pytest.approx(OVERCONFIDENCE, rel=0.1)
    y = labels.numpy()
    ece_before = expected_calibration_error(y, calibrated_softmax(over).numpy())
    ece_after = expected_calibration_error(y, calibrated_softmax(over, t).numpy())
    assert ece_before > 0.1
    assert ece_after < 0.03 and ece_after < ece_before / 4
    assert nll(over, labels, t) < nll(over, labels, 1.0)


def test_a_calibrated_model_keeps_a_temperature_near_one():
    logits, labels = calibrated_problem(seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


def test_fitted_temperature_is_the_nll_minimum():
    logits, labels = calibrated_problem(n=2000, seed=2)
    over = logits * 3
    t = fit_temperature(over, labels)
    best = nll(over, labels, t)
    for other in (t * 0.9, t * 1.1, 1.0):
        assert best <= nll(over, labels, other) + 1e-9


def test_temperature_changes_no_decision():
    logits = torch.randn(500, 4, generator=torch.Generator().manual_seed(3))
    argmax = logits.argmax(1)
    for t in (0.2, 1.0, 3.7, 50.0):
        probs = calibrated_softmax(logits, t)
        assert torch.equal(probs.argmax(1), argmax)
        assert torch.allclose(probs.sum(1), torch.ones(500))


def test_separable_validation_set_stays_within_the_search_bounds():
    labels = torch.tensor([0, 1] * 50)
    logits = torch.stack([1.0 - labels.double(), labels.double()], 1) * 10  # always right, by far
    t = fit_temperature(logits, labels)
    assert T_MIN <= t < 0.2  # sharper is always better here; the bound stops the run-away


def test_views_are_fitted_as_their_mean_probability():
    logits, labels = calibrated_problem(n=3000, seed=4)
    noise = torch.randn(4, *logits.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    views = (logits[None] + 0.3 * noise) * OVERCONFIDENCE
    t = fit_temperature(views, labels)
    assert nll(views, labels, t) < nll(views, labels, 1.0)
    assert 2.0 < t < 8.0
    # one view is the plain case
    assert nll(views[:1], labels, 2.0) == pytest.approx(nll(views[0], labels, 2.0))


def test_bad_inputs_are_user_errors():
    with pytest.raises(MedsightError, match="temperature"):
        calibrated_softmax(torch.zeros(2, 2), 0.0)
    with pytest.raises(MedsightError, match="shape"):
        nll(torch.zeros(2, 2, 2, 2), torch.zeros(2))
    with pytest.raises(MedsightError):
        fit_temperature(torch.zeros(0, 2), torch.zeros(0))


@pytest.mark.parametrize("t0, t", [(1.0, 2.5), (2.0, 0.7), (1.3, 1.3)])
def test_rescaled_threshold_keeps_every_binary_decision(t0, t):
    logits = torch.randn(2000, 2, generator=torch.Generator().manual_seed(6)) * 3
    for threshold in (0.05, 0.3, 0.5, 0.92):
        before = calibrated_softmax(logits, t0)[:, 1] >= threshold
        after = calibrated_softmax(logits, t)[:, 1] >= rescale_threshold(threshold, t0, t)
        assert torch.equal(before, after), threshold
    assert rescale_threshold(0.5, t0, t) == pytest.approx(0.5)


def test_read_calibration(tmp_path, caplog):
    assert read_calibration(tmp_path) is None
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    from medsight.inference.engine import file_sha256

    body = {"temperature": 2.0, "review_threshold": 0.4, "checkpoint_sha256": file_sha256(checkpoint),
            "tta": {"temperature": 1.5, "review_threshold": 0.5}}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(body))
    c = read_calibration(tmp_path, checkpoint)
    assert (c.temperature_for(False), c.temperature_for(True)) == (2.0, 1.5)
    assert (c.review_threshold_for(False), c.review_threshold_for(True)) == (0.4, 0.5)

    checkpoint.write_bytes(b"other weights")  # retrained after calibration: stale, ignored
    with caplog.at_level(logging.WARNING):
        assert read_calibration(tmp_path, checkpoint) is None
    assert "calibrate" in caplog.text

    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(InputFileError, match="positive"):
        read_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(InputFileError, match="calibrat"):
        read_calibration(tmp_path)


def test_ece_recovery_is_not_an_accident_of_binning():
    """The same over-confidence with 15 bins: ECE falls as much."""
    logits, labels = calibrated_problem(seed=7)
    over = logits * OVERCONFIDENCE
    t = fit_temperature(over, labels)
    y = labels.numpy()
    before = expected_calibration_error(y, calibrated_softmax(over).numpy(), 15)
    after = expected_calibration_error(y, calibrated_softmax(over, t).numpy(), 15)
    assert after < before / 4
    assert np.isfinite(after)
