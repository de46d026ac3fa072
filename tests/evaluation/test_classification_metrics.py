"""classification_metrics and threshold_for_sensitivity against scikit-learn and by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from medsight.errors import MedsightError
from medsight.evaluation.classification import (
    METRICS,
    classification_metrics,
    predict_labels,
    resample_metrics,
    threshold_for_sensitivity,
)


def test_binary_metrics_agree_with_sklearn(make_scores):
    y, probs = make_scores(300, k=2, seed=1)
    m = classification_metrics(y, probs, ["normal", "nodule"], n_bootstrap=50)
    pred = (probs[:, 1] >= 0.5).astype(int)
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, pred)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, probs[:, 1]))
    assert m["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert m["threshold"] == 0.5
    assert m["n"] == 300
    assert m["n_per_class"] == {"normal": int((y == 0).sum()), "nodule": int((y == 1).sum())}


def test_multiclass_metrics_agree_with_sklearn(make_scores):
    y, probs = make_scores(300, k=3, seed=2)
    names = ["normal", "pneumonia", "covid"]
    m = classification_metrics(y, probs, names, threshold=0.9, n_bootstrap=50)
    pred = probs.argmax(axis=1)
    cm = skm.confusion_matrix(y, pred)
    fp = cm.sum(axis=0) - np.diag(cm)
    tn = cm.sum() - cm.sum(axis=0) - cm.sum(axis=1) + np.diag(cm)

    assert m["threshold"] is None  # ignored for multiclass
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["specificity"] == pytest.approx(np.mean(tn / (tn + fp)))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == cm.tolist()

    prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred)
    for i, name in enumerate(names):
        assert m["per_class"][name] == pytest.approx(
            {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": support[i]}
        )


def test_threshold_changes_binary_predictions():
    y = np.array([0, 1, 0, 1])
    p1 = np.array([0.2, 0.4, 0.6, 0.8])
    probs = np.column_stack([1 - p1, p1])

    def at(threshold):
        return classification_metrics(y, probs, ["neg", "pos"], threshold=threshold, n_bootstrap=0)

    assert at(0.3)["confusion_matrix"] == [[1, 1], [0, 2]]
    assert at(0.5)["confusion_matrix"] == [[1, 1], [1, 1]]
    assert at(0.6)["confusion_matrix"] == [[1, 1], [1, 1]]  # p >= threshold is positive
    high = at(0.7)
    assert high["confusion_matrix"] == [[2, 0], [1, 1]]
    assert (high["sensitivity"], high["specificity"], high["threshold"]) == (0.5, 1.0, 0.7)


def test_result_is_plain_json():
    y, probs = np.array([0, 1, 1, 0, 1]), np.full((5, 2), 0.5)
    m = classification_metrics(y, probs, ["a", "b"], n_bootstrap=20)
    json.dumps(m, allow_nan=False)
    assert all(type(m[name]) is float for name in METRICS if m[name] is not None)
    assert all(type(v) is float for ci in m["ci"].values() for v in ci if v is not None)
    assert set(m["ci"]) == set(METRICS)


@pytest.mark.parametrize(
    "y, pred_classes, k",
    [
        ([0, 1, 1, 0, 1, 0, 0, 1], None, 2),
        ([0, 0, 0, 0, 0, 0, 0, 0], None, 2),  # no positives: sensitivity and AUC undefined
        ([0, 1, 2, 2, 1, 0, 1, 2, 0], None, 3),
        ([0, 1, 1, 0, 1, 0, 1, 0], 3, 3),  # class 2 never true, sometimes predicted
        ([0, 1, 2, 2, 1, 0, 1, 2], 2, 3),  # class 2 never predicted
    ],
)
def test_vectorised_bootstrap_metrics_match_point_estimates(y, pred_classes, k):
    y = np.asarray(y)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(k), size=y.size)
    if pred_classes == 2:  # make class 2 never the arg-max
        probs[:, 2] = 0.0
        probs /= probs.sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(k)]
    point = classification_metrics(y, probs, names, n_bootstrap=0)
    identity = resample_metrics(y, probs, predict_labels(probs, point["threshold"]), np.arange(y.size)[None])
    for name in METRICS:
        value = identity[name][0]
        assert (None if np.isnan(value) else pytest.approx(value)) == point[name], name


@pytest.mark.parametrize("k", [2, 3])
def test_each_bootstrap_resample_matches_sklearn_on_that_resample(make_scores, k):
    y, probs = make_scores(60, k=k, seed=11, separation=1.0)
    probs = np.round(probs, 1)  # coarse scores: many ties for the rank-based AUC
    probs /= probs.sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(k)]
    idx = np.random.default_rng(0).integers(0, y.size, size=(8, y.size))
    batch = resample_metrics(y, probs, predict_labels(probs, 0.5), idx)
    for row, sample in enumerate(idx):
        expected = classification_metrics(y[sample], probs[sample], names, n_bootstrap=0)
        for name in METRICS:
            value = batch[name][row]
            assert (None if np.isnan(value) else pytest.approx(value)) == expected[name], (row, name)


def test_ci_contains_estimate_and_is_deterministic(make_scores):
    y, probs = make_scores(400, k=2, seed=3)
    m = classification_metrics(y, probs, ["a", "b"], seed=7)
    for name in METRICS:
        low, high = m["ci"][name]
        assert low <= m[name] <= high, name
        assert low < high, name
    assert classification_metrics(y, probs, ["a", "b"], seed=7)["ci"] == m["ci"]
    assert classification_metrics(y, probs, ["a", "b"], seed=8)["ci"] != m["ci"]


def test_ci_narrows_with_more_data(make_scores):
    small = classification_metrics(*make_scores(200, k=3, seed=4), ["a", "b", "c"], n_bootstrap=300)
    large = classification_metrics(*make_scores(2000, k=3, seed=5), ["a", "b", "c"], n_bootstrap=300)
    for name in ("accuracy", "sensitivity", "auc", "brier"):
        width_small = np.diff(small["ci"][name])[0]
        width_large = np.diff(large["ci"][name])[0]
        assert width_large < 0.5 * width_small, name  # about 1/sqrt(10) expected


def test_ci_level_widens_interval(make_scores):
    y, probs = make_scores(300, seed=6)
    narrow = classification_metrics(y, probs, ["a", "b"], ci_level=0.5, n_bootstrap=300)
    wide = classification_metrics(y, probs, ["a", "b"], ci_level=0.99, n_bootstrap=300)
    assert np.diff(narrow["ci"]["auc"])[0] < np.diff(wide["ci"]["auc"])[0]
    assert wide["ci_level"] == 0.99 and wide["n_bootstrap"] == 300


def test_undefined_metrics_are_none():
    y = np.zeros(6, dtype=int)
    probs = np.column_stack([np.linspace(0.9, 0.4, 6), np.linspace(0.1, 0.6, 6)])
    m = classification_metrics(y, probs, ["neg", "pos"], n_bootstrap=100)
    for name in ("sensitivity", "auc"):
        assert m[name] is None
        assert m["ci"][name] == [None, None]
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["per_class"]["pos"]["recall"] is None
    json.dumps(m, allow_nan=False)


def test_multiclass_auc_over_the_classes_present_when_one_is_absent():
    # a rare grade with no case in a small test split: the AUC of the others, not "undefined"
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=8)
    m = classification_metrics(y, probs, ["a", "b", "c"], n_bootstrap=200)
    from sklearn.metrics import roc_auc_score

    expected = np.mean([roc_auc_score(y == k, probs[:, k]) for k in (0, 1)])
    assert m["auc"] == pytest.approx(expected)
    lo, hi = m["ci"]["auc"]
    assert lo is not None and lo <= m["auc"] <= hi


def test_bootstrap_skips_resamples_where_metric_is_undefined():
    # Two positives in 30 cases: many resamples have none, yet the CI must exist and be valid.
    y = np.zeros(30, dtype=int)
    y[[3, 17]] = 1
    p1 = np.linspace(0.05, 0.95, 30)
    m = classification_metrics(y, np.column_stack([1 - p1, p1]), ["neg", "pos"], n_bootstrap=200)
    low, high = m["ci"]["auc"]
    assert 0.0 <= low <= m["auc"] <= high <= 1.0


@pytest.mark.parametrize(
    "y, probs, names, message",
    [
        ([0, 1], [[0.5, np.nan], [0.2, 0.8]], ["a", "b"], "NaN"),
        ([0, 1, 1], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"], "label"),
        ([0, 2], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"], "labels must be in"),
        ([0, -1], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"], "labels must be in"),
        ([0, 1], [[2.0, -1.0], [0.2, 0.8]], ["a", "b"], "logits"),
        ([0, 1], [[0.5, 0.2], [0.2, 0.8]], ["a", "b"], "sum to 1"),
        ([0, 1], [[0.5, 0.5], [0.2, 0.8]], ["a", "b", "c"], "class names"),
        ([0.5, 1], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"], "integers"),
        ([], np.empty((0, 2)), ["a", "b"], "no cases"),
        ([0, 1], [0.5, 0.2], ["a", "b"], "shape"),
    ],
)
def test_bad_input_raises_medsight_error(y, probs, names, message):
    with pytest.raises(MedsightError, match=message):
        classification_metrics(np.asarray(y), np.asarray(probs, dtype=float), names)


@pytest.mark.parametrize("lossy", [lambda p: p.astype(np.float32), lambda p: np.round(p, 3)])
def test_low_precision_probabilities_are_accepted(make_scores, lossy):
    y, probs = make_scores(50, k=4, seed=9)
    m = classification_metrics(y, lossy(probs), list("abcd"), n_bootstrap=10)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"), abs=0.01)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, probs), abs=1e-3)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_threshold_for_sensitivity_is_highest_reaching_target(make_scores, target):
    y, probs = make_scores(500, k=2, seed=10)
    p1 = probs[:, 1]
    t = threshold_for_sensitivity(y, p1, target)

    def sensitivity(threshold):
        return np.mean(p1[y == 1] >= threshold)

    assert sensitivity(t) >= target
    assert sensitivity(np.nextafter(t, np.inf)) < target  # any higher threshold falls short


def test_threshold_for_sensitivity_with_tied_scores():
    y = np.array([1, 1, 1, 0, 1, 0])
    p = np.array([0.9, 0.7, 0.7, 0.7, 0.2, 0.1])
    assert threshold_for_sensitivity(y, p, 0.5) == 0.7  # ties move together: 3/4 at 0.7, 1/4 above
    assert threshold_for_sensitivity(y, p, 0.8) == 0.2


def test_threshold_for_sensitivity_rejects_bad_input():
    with pytest.raises(MedsightError, match="no positive"):
        threshold_for_sensitivity(np.zeros(4, dtype=int), np.linspace(0, 1, 4), 0.9)
    with pytest.raises(MedsightError, match="target"):
        threshold_for_sensitivity(np.array([0, 1]), np.array([0.2, 0.8]), 0.0)
    with pytest.raises(MedsightError, match="NaN"):
        threshold_for_sensitivity(np.array([0, 1]), np.array([0.2, np.nan]), 0.9)


def test_multiclass_auc_is_the_macro_over_the_classes_present():
    from sklearn.metrics import roc_auc_score

    from medsight.metrics.classification import auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    p = rng.dirichlet(np.ones(4), 300)
    p[np.arange(300), y] += 0.3  # informative
    p /= p.sum(1, keepdims=True)
    assert auc_score(y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    y_missing = np.where(y == 3, 0, y)  # no case of class 3 in this split
    expected = np.mean([roc_auc_score(y_missing == k, p[:, k]) for k in range(3)])
    assert auc_score(y_missing, p) == pytest.approx(expected) and 0.5 < expected < 1
    assert np.isnan(auc_score(np.zeros(10, int), p[:10]))
