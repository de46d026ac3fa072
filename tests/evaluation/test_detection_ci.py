"""Bootstrap CIs of VOC AP over images: the reweighted resamples equal the metrics recomputed on
resampled image lists, and the interval brackets the estimate and narrows with more images."""

import math

import numpy as np
import pytest

from medsight.evaluation.bootstrap import resample_counts
from medsight.evaluation.detection import bootstrap_ap, detection_metrics_with_ci
from medsight.metrics.detection import average_precision, detection_metrics, match_detections

NAMES = ["cell", "blob"]


def noisy_images(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``n`` images of 1-3 objects; the detector finds most (jittered), misses some, adds false ones."""
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        corners = rng.uniform(0, 80, size=(k, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(10, 20, size=(k, 2))], axis=1)
        labels = rng.integers(0, 2, size=k)
        targets.append({"boxes": boxes, "labels": labels})
        found = rng.random(k) < 0.8
        p_boxes = boxes[found] + rng.normal(0, 1.5, size=(int(found.sum()), 4))
        p_scores = rng.uniform(0.3, 1.0, size=int(found.sum()))
        n_false = int(rng.integers(0, 3))
        f_corners = rng.uniform(100, 180, size=(n_false, 2))
        p_boxes = np.concatenate([p_boxes, np.concatenate([f_corners, f_corners + 15], axis=1)])
        predictions.append({"boxes": p_boxes, "labels": np.concatenate([labels[found], rng.integers(0, 2, n_false)]),
                            "scores": np.concatenate([p_scores, rng.uniform(0.0, 0.8, size=n_false)])})
    return predictions, targets


def test_a_resample_is_the_metrics_of_the_resampled_image_list():
    predictions, targets = noisy_images(12, seed=1)
    matches = match_detections(predictions, targets, len(NAMES))
    idx = np.random.default_rng(5).integers(0, 12, size=(4, 12))
    weights = resample_counts(idx, 12)
    for row, w in zip(idx, weights):
        direct = detection_metrics([predictions[i] for i in row], [targets[i] for i in row], NAMES)
        for k, name in enumerate(NAMES):
            recall, precision, n_gt = matches[k].curves(w)
            assert n_gt == direct["n_ground_truth"][name]
            assert average_precision(recall, precision) == pytest.approx(direct["ap"][name], abs=1e-12)
    identity = bootstrap_ap(matches, 0, np.random.default_rng(0))
    assert identity.shape == (0, 2)


def test_ci_brackets_the_estimate_and_narrows_with_more_images():
    small = detection_metrics_with_ci(*noisy_images(20, seed=2), NAMES, n_bootstrap=500, seed=0)
    large = detection_metrics_with_ci(*noisy_images(320, seed=3), NAMES, n_bootstrap=500, seed=0)
    for m in (small, large):
        assert m["n"] == m["n_images"] and m["ci_level"] == 0.95 and m["n_bootstrap"] == 500
        low, high = m["ci"]["map"]
        assert low <= m["map"] <= high
        for name in NAMES:
            low, high = m["ci"]["ap"][name]
            assert low <= m["ap"][name] <= high
    width = {key: (m["ci"]["map"][1] - m["ci"]["map"][0]) for key, m in (("small", small), ("large", large))}
    assert width["large"] < width["small"] / 2  # ~ 1 / sqrt(16) = 1/4 expected
    # the point estimates are the plain VOC metrics
    plain = detection_metrics(*noisy_images(20, seed=2), NAMES)
    assert small["map"] == plain["map"] and small["ap"] == plain["ap"]


def test_a_class_without_objects_has_no_interval_and_the_seed_repeats():
    predictions, targets = noisy_images(10, seed=4)
    for t in targets:
        t["labels"] = np.zeros_like(t["labels"])  # no blobs at all
    a = detection_metrics_with_ci(predictions, targets, NAMES, n_bootstrap=200, seed=7)
    b = detection_metrics_with_ci(predictions, targets, NAMES, n_bootstrap=200, seed=7)
    assert math.isnan(a["ap"]["blob"]) and a["ci"]["ap"]["blob"] == [None, None]
    assert a["ci"] == b["ci"] and a["ci"]["map"] == a["ci"]["ap"]["cell"]
    none = detection_metrics_with_ci(predictions, targets, NAMES, n_bootstrap=0)
    assert none["ci"]["map"] == [None, None]
