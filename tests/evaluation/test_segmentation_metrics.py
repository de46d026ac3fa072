"""Segmentation metrics on hand-made masks whose answers are known, summaries, CSV and figures."""

from __future__ import annotations

import csv
import json
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from medsight.errors import MedsightError
from medsight.evaluation.segmentation import METRICS, case_metrics, rank_cases, summarize, write_cases_csv
from medsight.evaluation.segmentation_plots import plot_dice_per_class
from medsight.inference.contours import _case_slice, overlay_cases_png
from tests.evaluation.test_evaluation_plots import assert_png

NAMES = ["background", "lesion"]


def cube(shape, start, n, label=1, dtype=np.uint8):
    mask = np.zeros(shape, dtype)
    mask[tuple(slice(s, s + n) for s in start)] = label
    return mask


def json_safe(obj) -> str:
    return json.dumps(obj, allow_nan=False)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cubes_offset_by_k_voxels(k):
    # Cubes of side n = 6 offset by k along axis 0: overlap (n-k)n², so Dice (n-k)/n and
    # IoU (n-k)/(n+k). No surface voxel is farther than k from the other surface, and the
    # 36 leading-face voxels (24% of the 152 surface voxels, > 5%) are exactly k away: HD95 = k.
    n = 6
    ref = cube((16, 12, 12), (2, 3, 3), n)
    pred = cube((16, 12, 12), (2 + k, 3, 3), n)
    m = case_metrics(pred, ref, (1.0, 1.0, 1.0), NAMES)["lesion"]
    assert m["dice"] == pytest.approx((n - k) / n, rel=1e-6)
    assert m["iou"] == pytest.approx((n - k) / (n + k), rel=1e-6)
    assert m["hd95_mm"] == pytest.approx(k)
    assert 0 < m["msd_mm"] < k


def test_anisotropic_spacing_scales_distances_along_its_axis():
    ref = cube((16, 12, 12), (2, 3, 3), 6)
    along_0 = cube((16, 12, 12), (4, 3, 3), 6)  # 2 voxels along the 3 mm axis
    along_1 = cube((16, 12, 12), (2, 5, 3), 6)  # 2 voxels along a 1 mm axis
    spacing = (3.0, 1.0, 1.0)
    m0 = case_metrics(along_0, ref, spacing, NAMES)["lesion"]
    m1 = case_metrics(along_1, ref, spacing, NAMES)["lesion"]
    iso = case_metrics(along_0, ref, (1, 1, 1), NAMES)["lesion"]
    assert m0["hd95_mm"] == pytest.approx(6.0)
    assert m1["hd95_mm"] == pytest.approx(2.0)
    assert m0["msd_mm"] > m1["msd_mm"]
    assert m0["dice"] == pytest.approx(iso["dice"])  # overlap does not depend on spacing
    assert m0["volume_ref"] == pytest.approx(6 ** 3 * 3.0)  # mm³ from the spacing


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8)])
def test_plates_one_voxel_thick_give_exact_mean_surface_distance(spacing):
    # Every voxel of a one-voxel plate is surface, and its nearest voxel on the parallel plate
    # k planes away is straight across: every surface distance, hence HD95 and MSD, is k·s.
    k = 3
    ref = np.zeros((12, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[2, 2:8, 2:8] = 1
    pred[2 + k, 2:8, 2:8] = 1
    m = case_metrics(pred, ref, spacing, NAMES)["lesion"]
    assert m["hd95_mm"] == pytest.approx(k * spacing[0])
    assert m["msd_mm"] == pytest.approx(k * spacing[0])
    assert m["dice"] == 0.0 and m["iou"] == 0.0


def test_2d_square_and_shifted_square():
    # 6x6 squares, one shifted 2 rows. Edge pixels: 20 each. Distances from one edge to the
    # other: the leading row 6 x 2, the next two side pixels 1 each, the trailing row
    # 0,1,2,2,1,0, the rest 0 -> sum 20 over 20 pixels: mean 1 pixel, symmetric. Max 2.
    ref = cube((12, 12), (2, 2), 6)
    pred = cube((12, 12), (4, 2), 6)
    m = case_metrics(pred, ref, (0.5, 0.5), NAMES)["lesion"]
    assert m["dice"] == pytest.approx(2 / 3, rel=1e-6)
    assert m["iou"] == pytest.approx(0.5, rel=1e-6)
    assert m["hd95_mm"] == pytest.approx(1.0)
    assert m["msd_mm"] == pytest.approx(0.5)
    assert m["volume_pred"] == pytest.approx(36 * 0.25)  # mm² in 2D


def test_2d_area_and_volume_errors_from_spacing():
    ref = cube((10, 10), (1, 1), 4)  # 16 pixels of 0.5 x 2 mm = 16 mm²
    pred = np.zeros_like(ref)
    pred[1:4, 1:5] = 1  # 12 pixels = 12 mm²
    m = case_metrics(pred, ref, (0.5, 2.0), NAMES)["lesion"]
    assert m["volume_ref"] == pytest.approx(16.0)
    assert m["volume_pred"] == pytest.approx(12.0)
    assert m["abs_volume_error"] == pytest.approx(4.0)
    assert m["rel_volume_error"] == pytest.approx(0.25)


def test_empty_mask_conventions_are_json_safe_and_silent():
    empty = np.zeros((8, 8, 8), np.uint8)
    full = cube((8, 8, 8), (2, 2, 2), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no MONAI empty-mask or deprecation warnings leak out
        both = case_metrics(empty, empty, (1, 1, 1), NAMES)["lesion"]
        missed = case_metrics(empty, full, (1, 1, 1), NAMES)["lesion"]
        invented = case_metrics(full, empty, (1, 1, 1), NAMES)["lesion"]
    assert both == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "msd_mm": 0.0, "volume_pred": 0.0,
                    "volume_ref": 0.0, "abs_volume_error": 0.0, "rel_volume_error": None}
    assert (missed["dice"], missed["iou"], missed["hd95_mm"], missed["msd_mm"]) == (0.0, 0.0, None, None)
    assert missed["rel_volume_error"] == 1.0
    assert (invented["dice"], invented["iou"], invented["hd95_mm"], invented["msd_mm"]) == (0.0, 0.0, None, None)
    assert invented["rel_volume_error"] is None and invented["abs_volume_error"] == 27.0
    json_safe([both, missed, invented])


def test_classes_are_measured_separately():
    names = ["background", "anterior", "posterior", "absent"]
    ref = cube((10, 10, 10), (1, 1, 1), 4, label=1) + cube((10, 10, 10), (5, 5, 5), 4, label=2)
    pred = ref.copy()
    pred[pred == 2] = 1  # posterior predicted as anterior
    m = case_metrics(pred, ref, (1, 1, 1), names)
    assert set(m) == {"anterior", "posterior", "absent"}
    assert all(set(v) == set(METRICS) for v in m.values())
    assert m["anterior"]["dice"] == pytest.approx(2 * 64 / (128 + 64), rel=1e-6)
    assert m["posterior"]["dice"] == 0.0 and m["posterior"]["hd95_mm"] is None
    assert m["absent"]["dice"] == 1.0  # absent in both: the both-empty convention


def test_accepts_tensors_float_labels_and_a_channel_axis():
    ref = cube((8, 8, 8), (2, 2, 2), 3)
    pred = cube((8, 8, 8), (3, 2, 2), 3)
    expected = case_metrics(pred, ref, (1, 1, 2), NAMES)
    as_tensor = case_metrics(torch.from_numpy(pred.astype(np.float32))[None], ref[None], [1, 1, 2], NAMES)
    assert as_tensor == expected


@pytest.mark.parametrize("pred, ref, spacing, names, message", [
    (np.zeros((4, 4)), np.zeros((4, 5)), (1, 1), NAMES, "shape"),
    (np.full((4, 4), 2), np.zeros((4, 4)), (1, 1), NAMES, "label 2"),
    (np.full((4, 4), 0.5), np.zeros((4, 4)), (1, 1), NAMES, "whole numbers"),
    (np.zeros((4, 4)), np.zeros((4, 4)), (1, 1, 1), NAMES, "spatial axes"),
    (np.zeros((4, 4)), np.zeros((4, 4)), (1, 0), NAMES, "positive"),
    (np.zeros((4, 4)), np.zeros((4, 4)), (1, 1), ["background"], "at least one class"),
])
def test_invalid_inputs_are_user_errors(pred, ref, spacing, names, message):
    with pytest.raises(MedsightError, match=message):
        case_metrics(pred, ref, spacing, names)


def _row(case, dice, hd95):
    metrics = dict.fromkeys(METRICS, 1.0)
    metrics.update(dice=dice, hd95_mm=hd95)
    return {"case": case, "lesion": metrics}


def test_summarize_ignores_none_and_is_deterministic():
    rows = [_row("a", 0.2, 4.0), _row("b", 0.4, None), _row("c", 0.6, 2.0), _row("d", 0.8, 6.0)]
    s = summarize(rows, NAMES, n_bootstrap=500, seed=3)
    dice = s["per_class"]["lesion"]["dice"]
    assert dice["mean"] == pytest.approx(0.5) and dice["median"] == pytest.approx(0.5) and dice["n"] == 4
    assert 0.2 <= dice["ci"][0] < 0.5 < dice["ci"][1] <= 0.8
    hd = s["per_class"]["lesion"]["hd95_mm"]
    assert hd["mean"] == pytest.approx(4.0) and hd["n"] == 3
    assert s["per_class"]["lesion"]["iou"]["ci"] == [1.0, 1.0]  # constant metric: zero-width CI
    assert s["mean_dice"]["mean"] == pytest.approx(0.5) and s["n_cases"] == 4
    assert summarize(rows, NAMES, n_bootstrap=500, seed=3) == s
    assert summarize(rows, NAMES, n_bootstrap=500, seed=4)["mean_dice"]["ci"] != s["mean_dice"]["ci"]
    json_safe(s)


def test_summary_ci_matches_the_normal_approximation_for_many_cases():
    rng = np.random.default_rng(0)
    dice = rng.uniform(0.5, 1.0, 400)
    s = summarize([_row(str(i), d, 1.0) for i, d in enumerate(dice)], NAMES, n_bootstrap=2000)
    half = 1.96 * dice.std() / np.sqrt(dice.size)
    lo, hi = s["per_class"]["lesion"]["dice"]["ci"]
    assert lo == pytest.approx(dice.mean() - half, abs=0.15 * half)
    assert hi == pytest.approx(dice.mean() + half, abs=0.15 * half)


def test_mean_dice_averages_classes_within_each_case():
    names = ["background", "a", "b"]
    rows = [{"case": "1", "a": {**_row("", 1.0, 0)["lesion"]}, "b": {**_row("", 0.0, None)["lesion"]}},
            {"case": "2", "a": {**_row("", 0.5, 0)["lesion"]}, "b": {**_row("", 0.5, 0)["lesion"]}}]
    s = summarize(rows, names, n_bootstrap=0)
    assert s["mean_dice"]["mean"] == pytest.approx(0.5)
    assert s["mean_dice"]["ci"] == [None, None]  # no resamples, no interval
    best, worst = rank_cases(rows, names, n=1)
    assert best[0]["case"] == "1" and worst[0]["case"] == "2"  # 0.5 vs 0.5: ties keep order
    with pytest.raises(MedsightError, match="no metrics for class 'b'"):
        summarize([{"case": "x", "a": rows[0]["a"]}], names)


def test_cases_csv_round_trips(tmp_path):
    ref = cube((8, 8, 8), (2, 2, 2), 3)
    rows = [{"case": "c1", **case_metrics(cube((8, 8, 8), (3, 2, 2), 3), ref, (1, 1, 1), NAMES)},
            {"case": "c2", **case_metrics(np.zeros_like(ref), ref, (1, 1, 1), NAMES)}]
    path = tmp_path / "out" / "cases.csv"
    write_cases_csv(path, rows, NAMES)
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == ["case"] + [f"lesion_{m}" for m in METRICS]
    assert [r["case"] for r in read] == ["c1", "c2"]
    assert float(read[0]["lesion_dice"]) == rows[0]["lesion"]["dice"]
    assert read[1]["lesion_hd95_mm"] == ""  # None is an empty cell
    assert [p.name for p in path.parent.iterdir()] == ["cases.csv"]  # no temporary file left


def test_dice_plot_and_overlays_render():
    rng = np.random.default_rng(0)
    ref = cube((16, 20, 12), (4, 5, 3), 6)
    rows, items = [], []
    for i in range(4):
        pred = np.roll(ref, i, axis=0)
        rows.append({"case": str(i), **case_metrics(pred, ref, (1, 1, 2), NAMES)})
        items.append({"image": rng.normal(size=(1, *ref.shape)), "ref": ref, "pred": pred,
                      "caption": f"case {i}", "spacing": (1, 1, 2)})
    items.append({"image": rng.normal(size=(16, 20)), "ref": ref[:, :, 5], "pred": ref[:, :, 5]})
    before = plt.get_fignums()
    assert_png(plot_dice_per_class(rows, NAMES))
    assert_png(overlay_cases_png(items, NAMES))
    assert_png(overlay_cases_png([]))
    assert plt.get_fignums() == before
    with pytest.raises(ValueError, match="shape"):
        overlay_cases_png([{"image": np.zeros((4, 4)), "ref": np.zeros((4, 5)), "pred": np.zeros((4, 5))}])


def test_overlay_shows_the_slice_with_most_reference_foreground():
    ref = np.zeros((10, 10, 9), np.uint8)
    ref[2:4, 2:4, 2] = 1
    ref[2:8, 2:8, 6] = 1  # the biggest cross-section
    pred = np.zeros_like(ref)
    pred[:, :, 8] = 1
    image, ref2d, pred2d, aspect, title = _case_slice(
        {"image": np.zeros(ref.shape), "ref": ref, "pred": pred, "caption": "c", "spacing": (2, 1, 3)}, axis=-1)
    assert title == "c (slice 6)" and ref2d.sum() == 36 and pred2d.sum() == 0 and aspect == 2.0
    _, _, _, _, title = _case_slice({"image": np.zeros(ref.shape), "ref": 0 * ref, "pred": pred}, axis=2)
    assert title.endswith("(slice 8)")  # empty reference: the prediction decides
