"""VOC mAP on constructed cases whose answers are known by hand."""

import math

import numpy as np
import pytest
import torch

from medsight.evaluation.detection_plots import plot_detection_pr
from medsight.metrics.detection import average_precision, detection_metrics

NAMES = ["cell", "blob"]


def gt(boxes, labels, difficult=None):
    t = {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels, int)}
    if difficult is not None:
        t["difficult"] = np.asarray(difficult, bool)
    return t


def det(boxes, labels, scores):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels, int),
            "scores": np.asarray(scores, float)}


A, B, C = [0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 10]
FAR = [100, 100, 110, 110]


def test_perfect_detections_give_ap_one_for_every_class():
    targets = [gt([A, B], [0, 1]), gt([C], [0])]
    preds = [det([A, B], [0, 1], [0.9, 0.8]), det([C], [0], [0.7])]
    m = detection_metrics(preds, targets, NAMES)
    assert m["ap"] == {"cell": 1.0, "blob": 1.0} and m["map"] == 1.0
    assert m["n_ground_truth"] == {"cell": 2, "blob": 1}


def test_a_missed_object_halves_ap():
    m = detection_metrics([det([A], [0], [0.9])], [gt([A, C], [0, 0])], ["cell"])
    assert m["ap"]["cell"] == pytest.approx(0.5)


def test_false_positive_ranked_above_the_true_positive():
    # ranks: FP (0.9), TP (0.8): precision 1/2 at recall 1 -> AP 0.5; reversed scores -> AP 1.
    targets = [gt([A], [0])]
    assert detection_metrics([det([FAR, A], [0, 0], [0.9, 0.8])], targets, ["cell"])["ap"]["cell"] == pytest.approx(0.5)
    assert detection_metrics([det([FAR, A], [0, 0], [0.8, 0.9])], targets, ["cell"])["ap"]["cell"] == pytest.approx(1.0)


def test_ranking_is_pooled_across_images_with_all_point_interpolation():
    # 3 objects over two images; ranked TP, FP, TP, FP, TP:
    # precision 1 at recall 1/3, 2/3 at 2/3, 3/5 at 1 -> AP = (1 + 2/3 + 3/5) / 3.
    targets = [gt([A, B], [0, 0]), gt([C], [0])]
    preds = [det([A, FAR, B], [0, 0, 0], [0.9, 0.8, 0.7]), det([FAR, C], [0, 0], [0.6, 0.5])]
    ap = detection_metrics(preds, targets, ["cell"])["ap"]["cell"]
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_interpolation_uses_the_best_precision_at_higher_recall():
    # precision dips then recovers: envelope lifts the dip. Ranked TP, FP, TP with 2 objects:
    # raw precision 1, 1/2, 2/3; interpolated 1 at recall 1/2, 2/3 at recall 1 -> AP 5/6.
    assert average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)


def test_duplicates_wrong_class_and_low_iou_are_false_positives():
    shifted = [6, 0, 16, 10]  # IoU with A = 4/16 = 0.25
    preds = [det([A, A, A, shifted], [0, 0, 1, 0], [0.9, 0.8, 0.95, 0.85])]
    m = detection_metrics(preds, [gt([A], [0])], NAMES)
    assert m["ap"]["cell"] == pytest.approx(1.0)  # the TP ranks first among "cell" detections
    assert m["n_detections"] == {"cell": 3, "blob": 1}
    recall, precision = m["curves"]["cell"]["recall"], m["curves"]["cell"]["precision"]
    assert recall == [1.0, 1.0, 1.0] and precision == pytest.approx([1.0, 0.5, 1 / 3])


def test_class_without_ground_truth_has_no_ap_and_is_left_out_of_the_mean():
    preds = [det([A, FAR], [0, 1], [0.9, 0.9])]
    m = detection_metrics(preds, [gt([A], [0])], NAMES)
    assert math.isnan(m["ap"]["blob"]) and m["map"] == pytest.approx(1.0)
    assert m["n_detections"]["blob"] == 1


def test_no_detections_at_all_give_zero_ap():
    m = detection_metrics([det(np.zeros((0, 4)), [], [])], [gt([A], [0])], ["cell"])
    assert m["ap"]["cell"] == 0.0 and m["map"] == 0.0


def test_difficult_objects_are_neither_found_nor_missed():
    targets = [gt([A, C], [0, 0], difficult=[False, True])]
    # a detection on the difficult box, ranked first, must not count as a false positive
    m = detection_metrics([det([C, A], [0, 0], [0.9, 0.8])], targets, ["cell"])
    assert m["ap"]["cell"] == pytest.approx(1.0) and m["n_ground_truth"]["cell"] == 1
    # and missing it costs nothing
    assert detection_metrics([det([A], [0], [0.9])], targets, ["cell"])["ap"]["cell"] == pytest.approx(1.0)


def test_accepts_tensors_and_checks_lengths():
    targets = [{"boxes": torch.tensor([A], dtype=torch.float32), "labels": torch.tensor([0])}]
    preds = [{"boxes": torch.tensor([A], dtype=torch.float32), "labels": torch.tensor([0]),
              "scores": torch.tensor([0.5])}]
    assert detection_metrics(preds, targets, ["cell"])["map"] == 1.0
    with pytest.raises(ValueError):
        detection_metrics(preds, targets * 2, ["cell"])


def test_precision_recall_plot_is_a_png():
    m = detection_metrics([det([A, FAR], [0, 0], [0.9, 0.8])], [gt([A, C], [0, 0])], NAMES)
    png = plot_detection_pr(m)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
