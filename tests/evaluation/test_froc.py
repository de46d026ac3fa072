"""Lesion matching and FROC on constructed scans whose true and false positives are hand-counted."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from medsight.errors import MedsightError
from medsight.evaluation.froc import froc, lesion_hits, match_lesions, plot_froc, reference_lesions
from medsight.inference.lesions import label_lesions
from tests.evaluation.test_evaluation_plots import assert_png

EYE = np.eye(3)


def scan(ref_boxes, blobs, shape=(20, 20)):
    """A reference mask of square lesions and the lesions found in a map of single-pixel blobs."""
    ref = np.zeros(shape, np.uint8)
    for r, c, n in ref_boxes:
        ref[r:r + n, c:c + n] = 1
    prob = np.zeros(shape, np.float32)
    for (r, c), p in blobs.items():
        prob[r, c] = p
    lesions, labels = label_lesions(prob, EYE, threshold=0.1)
    return lesions, ref, labels


def constructed_cases():
    # Scan A: reference lesions R1 (rows/cols 2-5) and R2 (12-15).
    #   0.9 in R1 (TP), 0.8 outside (FP), 0.6 in R1 again (second hit: neither), 0.3 in R2 (TP).
    # Scan B: reference lesion R3; 0.7 outside (FP), 0.5 in R3 (TP), 0.2 outside (FP).
    # Scan C: no reference lesion; 0.4 (FP).
    a = scan([(2, 2, 4), (12, 12, 4)], {(2, 2): 0.9, (9, 17): 0.8, (5, 5): 0.6, (13, 13): 0.3})
    b = scan([(8, 8, 3)], {(1, 1): 0.7, (9, 9): 0.5, (18, 1): 0.2})
    c = scan([], {(10, 10): 0.4})
    return [a, b, c]


def test_constructed_froc_matches_the_hand_count():
    result = froc([case[:2] for case in constructed_cases()])
    # Descending thresholds with cumulative (FP, TP):
    # 0.9 (0,1) 0.8 (1,1) 0.7 (2,1) 0.6 (2,1) 0.5 (2,2) 0.4 (3,2) 0.3 (3,3) 0.2 (4,3); 3 scans, 3 lesions.
    assert result["thresholds"] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert result["fp_per_scan"] == pytest.approx(np.array([0, 1, 2, 2, 2, 3, 3, 4]) / 3)
    assert result["sensitivity"] == pytest.approx(np.array([1, 1, 1, 1, 2, 2, 3, 3]) / 3)
    # Curve from (0, 0): (0, 1/3) (1/3, 1/3) (2/3, 2/3) (1, 1) (4/3, 1), linear in between.
    expected = {"0.125": 1 / 3, "0.25": 1 / 3, "0.5": 0.5, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    assert result["sensitivity_at"] == pytest.approx(expected)
    assert result["score"] == pytest.approx(31 / 42)
    assert (result["n_reference_lesions"], result["n_detected"], result["n_scans"]) == (3, 3, 3)
    assert result["n_predicted_lesions"] == 8 and result["hit_rule"] == "center"
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # JSON-safe and round-trips


def test_second_hit_is_a_hit_but_not_a_second_true_positive():
    lesions, ref, _ = constructed_cases()[0]
    by_prob = {round(x["probability"], 2): x for x in lesions}
    assert lesion_hits(lesions, ref) == [1, None, 1, 2]  # ordered by probability 0.9, 0.8, 0.6, 0.3
    assert match_lesions(lesions, ref) == [True, False, True, True]
    only_duplicate = froc([([by_prob[0.9], by_prob[0.6]], ref)])
    assert only_duplicate["sensitivity"] == pytest.approx([0.5, 0.5])
    assert only_duplicate["fp_per_scan"] == [0.0, 0.0]


def test_iou_rule_uses_lesion_voxels():
    ref = np.zeros((20, 20), np.uint8)
    ref[2:6, 2:6] = 1  # 16 pixels
    prob = np.zeros((20, 20), np.float32)
    prob[2:6, 6:8] = 0.9  # just beside the lesion: no overlap
    prob[2:6, 2:4] = 0.8  # 8 pixels inside it (2 columns apart from the 0.9 blob): IoU 8/16
    prob[8:12, 2:5] = 0.3  # below the 0.5 lesion threshold
    lesions, labels = label_lesions(prob, EYE)
    assert [round(x["probability"], 1) for x in lesions] == [0.9, 0.8]  # 0.3 is below 0.5
    assert match_lesions(lesions, ref, "iou", 0.1, pred_labels=labels) == [False, True]
    assert match_lesions(lesions, ref, "iou", 0.6, pred_labels=labels) == [False, False]  # 0.5 < 0.6
    # A lesion overlapping by a corner: centre outside, IoU 4 / (16 + 16 - 4) = 1/7.
    corner = np.zeros((20, 20), np.float32)
    corner[4:8, 4:8] = 0.7
    lesions, labels = label_lesions(corner, EYE)
    assert match_lesions(lesions, ref, "center") == [False]
    assert match_lesions(lesions, ref, "iou", 0.14, pred_labels=labels) == [True]
    assert match_lesions(lesions, ref, "iou", 0.15, pred_labels=labels) == [False]
    result = froc([(lesions, ref, labels)], hit_rule="iou", iou_threshold=0.1)
    assert result["score"] == 1.0 and result["iou_threshold"] == 0.1


def test_centre_rule_rounds_to_the_nearest_voxel_in_3d():
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[2:4, 2:4, 2:4] = 1
    ref[6, 6, 6] = 1  # a second, separate reference lesion
    labels, n = reference_lesions(ref)
    assert n == 2
    assert lesion_hits([{"centroid_voxel": [3.5, 3.4, 2.0], "probability": 0.9}], ref) == [None]  # rounds to 4
    assert lesion_hits([{"centroid_voxel": [3.4, 3.4, 2.0], "probability": 0.9}], ref) == [1]
    assert lesion_hits([{"centroid_voxel": [5.6, 6.0, 6.4], "probability": 0.9}], ref) == [2]


def test_no_reference_lesions_and_no_predictions():
    empty_ref = np.zeros((10, 10), np.uint8)
    only_fp = froc([([{"centroid_voxel": [1, 1], "probability": 0.7}], empty_ref)])
    assert only_fp["sensitivity"] is None and only_fp["score"] is None
    assert set(only_fp["sensitivity_at"].values()) == {None}
    assert only_fp["fp_per_scan"] == [1.0]
    json.dumps(only_fp, allow_nan=False)
    ref = empty_ref.copy()
    ref[2:4, 2:4] = 1
    nothing_found = froc([([], ref), ([], empty_ref)])
    assert nothing_found["score"] == 0.0 and nothing_found["n_scans"] == 2
    assert nothing_found["fp_per_scan"] == [] and nothing_found["sensitivity"] == []
    before = plt.get_fignums()
    for result in (froc([case[:2] for case in constructed_cases()]), only_fp, nothing_found):
        assert_png(plot_froc(result))
    assert plt.get_fignums() == before


def test_ties_in_probability_form_one_operating_point():
    ref = np.zeros((10, 10), np.uint8)
    ref[1:3, 1:3] = 1
    lesions = [{"centroid_voxel": [1, 1], "probability": 0.5}, {"centroid_voxel": [8, 8], "probability": 0.5}]
    result = froc([(lesions, ref)], fp_rates=(0.5, 1))
    assert result["thresholds"] == [0.5] and result["fp_per_scan"] == [1.0] and result["sensitivity"] == [1.0]
    # From (0, 0) straight to (1 FP, sensitivity 1): half-way at 0.5 FP per scan.
    assert result["sensitivity_at"] == {"0.5": 0.5, "1": 1.0}


@pytest.mark.parametrize("kwargs, message", [
    ({"hit_rule": "overlap"}, "hit rule"),
    ({"hit_rule": "iou", "iou_threshold": 0.0}, "IoU threshold"),
    ({"fp_rates": ()}, "false-positive rates"),
])
def test_invalid_settings_are_user_errors(kwargs, message):
    with pytest.raises(MedsightError, match=message):
        froc([([], np.zeros((4, 4)))], **kwargs)


def test_mismatched_inputs_are_user_errors():
    ref = np.zeros((4, 4), np.uint8)
    lesion = {"centroid_voxel": [6.0, 1.0], "probability": 0.9, "label": 1}
    with pytest.raises(MedsightError, match="outside the reference mask"):
        match_lesions([lesion], ref)
    with pytest.raises(MedsightError, match="pred_labels"):
        match_lesions([lesion], ref, "iou")
    with pytest.raises(MedsightError, match="does not match"):
        match_lesions([lesion], ref, "iou", pred_labels=np.ones((5, 5), np.int32))
    with pytest.raises(MedsightError, match="no scans"):
        froc([])
    with pytest.raises(MedsightError, match="finite"):
        froc([([{"centroid_voxel": [1.0, 1.0], "probability": float("nan")}], ref)])
