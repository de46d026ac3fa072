"""Which epoch becomes best.pt: the one-standard-error rule of training/early_stopping.py."""

import numpy as np
import pytest

from medsight.metrics.classification import auc_score, auc_standard_error
from medsight.training.early_stopping import EarlyStopping

# val AUC of a BreastMNIST bf16 run (78 val cases): a lucky peak at epoch 3, then a plateau
# statistically as good (standard error ~0.02) on which training settles.
NOISY_PEAK = [0.87, 0.90, 0.965, 0.93, 0.94, 0.95, 0.948]


def choose(values, se=0.02, **kwargs) -> EarlyStopping:
    stopper = EarlyStopping("val_auc", **kwargs)
    for epoch, value in enumerate(values, start=1):
        stopper.update(epoch, {"val_auc": value, "val_auc_se": se})
    return stopper


def test_a_later_epoch_within_one_standard_error_of_the_peak_is_kept():
    stopper = choose(NOISY_PEAK)
    assert (stopper.best_epoch, stopper.kept_epoch) == (3, 7)  # plain maximum: epoch 3


def test_an_epoch_worse_by_more_than_the_error_is_not_kept():
    assert choose([0.80, 0.96, 0.93, 0.90], se=0.02).kept_epoch == 2


def test_without_a_standard_error_or_with_the_rule_off_the_maximum_is_kept():
    assert choose(NOISY_PEAK, se=None).kept_epoch == 3
    assert choose(NOISY_PEAK, within_se=False).kept_epoch == 3


def test_a_minimised_monitor_keeps_the_latest_loss_within_its_error():
    stopper = EarlyStopping("val_loss")
    for epoch, loss in enumerate([0.5, 0.30, 0.33, 0.40], start=1):
        stopper.update(epoch, {"val_loss": loss, "val_loss_se": 0.04})
    assert (stopper.best_epoch, stopper.kept_epoch) == (2, 3)


def test_patience_still_counts_from_the_best_value():
    stopper = choose([0.90, 0.95, 0.94, 0.94], patience=2)
    assert stopper.should_stop and stopper.kept_epoch == 4


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
