"""Which epoch becomes best.pt: the moving-average rule of training/early_stopping.py."""

import numpy as np
import pytest

from medsight.metrics.classification import auc_score, auc_standard_error
from medsight.training.early_stopping import EarlyStopping

# val AUC of a BreastMNIST bf16 run (78 val cases): a lucky peak at epoch 3, then a plateau
# statistically as good (standard error ~0.02) on which training settles.
NOISY_PEAK = [0.87, 0.90, 0.965, 0.93, 0.94, 0.95, 0.948]
# val AUC of a planned RetinaMNIST run (seed 2, standard error ~0.03): a peak at epoch 12, then
# overfitting, with a late epoch still within one standard error of the peak (epoch 29)
OVERFITS = [0.775, 0.789, 0.759, 0.782, 0.804, 0.784, 0.807, 0.802, 0.81, 0.79, 0.783, 0.814, 0.782,
            0.757, 0.802, 0.765, 0.77, 0.767, 0.769, 0.739, 0.708, 0.745, 0.792, 0.798, 0.801, 0.733,
            0.766, 0.785, 0.787, 0.762]


def choose(values, se=0.02, **kwargs) -> EarlyStopping:
    stopper = EarlyStopping("val_auc", **kwargs)
    for epoch, value in enumerate(values, start=1):
        stopper.update(epoch, {"val_auc": value, "val_auc_se": se})
    return stopper


def moving_average(values, weight=0.3):
    out = [values[0]]
    for v in values[1:]:
        out.append(weight * v + (1 - weight) * out[-1])
    return out


def test_a_lucky_single_peak_is_not_kept_but_the_settled_plateau_is():
    assert choose(NOISY_PEAK).kept_epoch == 7
    assert choose(NOISY_PEAK, smoothing=1.0).kept_epoch == 3  # the raw maximum


def test_an_overfit_tail_within_the_error_is_not_kept():
    stopper = choose(OVERFITS, se=0.03)
    assert stopper.kept_epoch == int(np.argmax(moving_average(OVERFITS))) + 1
    assert 9 <= stopper.kept_epoch <= 15  # around the peak (epoch 12), not the tail
    assert choose(OVERFITS, se=0.03, smoothing=1.0, within_se=True).kept_epoch == 29  # the rule before


def test_the_one_standard_error_rule_is_still_there_on_request():
    assert choose(NOISY_PEAK, smoothing=1.0, within_se=True).kept_epoch == 7
    assert choose([0.80, 0.96, 0.93, 0.90], smoothing=1.0, within_se=True).kept_epoch == 2
    assert choose(NOISY_PEAK, se=None, smoothing=1.0, within_se=True).kept_epoch == 3


def test_a_minimised_monitor_keeps_the_lowest_moving_average():
    losses = [0.9, 0.5, 0.2, 0.45, 0.40, 0.38, 0.60, 0.70]
    stopper = EarlyStopping("val_loss")
    kept = [e for e, loss in enumerate(losses, start=1) if stopper.update(e, {"val_loss": loss})]
    assert stopper.kept_epoch == int(np.argmin(moving_average(losses))) + 1 == kept[-1]
    assert stopper.kept_epoch != 3  # the raw minimum, a single dip


def test_an_epoch_without_the_metric_is_not_kept_and_leaves_the_average():
    stopper = choose([0.80, 0.85])
    before = stopper.smoothed
    assert not stopper.update(3, {"val_auc": float("nan")})
    assert stopper.smoothed == before and stopper.kept_epoch == 2


def test_patience_counts_from_the_best_moving_average():
    stopper = choose([0.90, 0.95, 0.80, 0.80], patience=2)
    assert stopper.should_stop and stopper.kept_epoch == 2
    assert not choose([0.90, 0.95, 0.94, 0.94], patience=2).should_stop  # the average still rises


def test_a_run_saved_before_the_moving_average_resumes_with_its_own_rule():
    stopper = EarlyStopping("val_auc")
    stopper.load_state_dict({"monitor": "val_auc", "within_se": True, "best": 0.965, "best_se": 0.02,
                             "best_epoch": 3, "kept_epoch": 3, "bad_epochs": 0})
    assert stopper.smoothing == 1.0
    assert stopper.update(4, {"val_auc": 0.95, "val_auc_se": 0.02})  # within the error: kept


@pytest.mark.parametrize("k", [2, 3])
def test_auc_standard_error_matches_the_spread_of_auc_over_resampled_val_sets(k):
    # Hanley & McNeil's formula against the bootstrap on a val split the size of BreastMNIST's
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, 78)
    logits = rng.normal(size=(78, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    boot = []
    for _ in range(400):
        idx = rng.integers(0, 78, 78)
        boot.append(auc_score(y[idx], probs[idx]))
    se, spread = auc_standard_error(y, probs), float(np.nanstd(boot))
    assert 0.01 < se < 0.1 and abs(se - spread) < 0.3 * spread, (se, spread)
    assert np.isnan(auc_standard_error(np.zeros(5, int), probs[:5]))
