"""Lesions from probability maps: components, sizes, centroids and diameters on drawn shapes."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from scipy.spatial.distance import pdist

from medsight.errors import MedsightError
from medsight.inference import lesions as lesions_module
from medsight.inference.lesions import find_lesions, label_lesions, write_lesion_table


def diag(*spacing):
    return np.diag([*spacing, 1.0])


def rotation_z(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


@pytest.mark.parametrize("axis, spacing", [(0, 2.5), (1, 0.7), (2, 3.0)])
def test_line_along_an_axis(axis, spacing):
    n = 9
    prob = np.zeros((12, 12, 12), np.float32)
    index = [5, 5, 5]
    index[axis] = slice(2, 2 + n)
    prob[tuple(index)] = 0.8
    sizes = [1.0, 1.0, 1.0]
    sizes[axis] = spacing
    affine = diag(*sizes)
    affine[:3, 3] = [-10, 20, 5]
    (lesion,) = find_lesions(prob, affine)
    assert lesion["diameter_mm"] == pytest.approx((n - 1) * spacing)
    assert lesion["volume_mm3"] == pytest.approx(n * spacing)
    assert lesion["n_voxels"] == n
    centre = [5.0, 5.0, 5.0]
    centre[axis] = 2 + (n - 1) / 2
    assert lesion["centroid_voxel"] == pytest.approx(centre)
    assert lesion["centroid_mm"] == pytest.approx(list(np.array(sizes) * centre + [-10, 20, 5]))
    assert lesion["probability"] == pytest.approx(0.8) and lesion["mean_probability"] == pytest.approx(0.8)


def disc(size: int, radius: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - size // 2
    return x ** 2 + y ** 2 <= radius ** 2


@pytest.mark.parametrize("affine", [diag(0.5, 0.5), np.diag([0.5, 0.5, 4.0, 1.0])], ids=["3x3", "4x4 (MONAI 2D)"])
def test_disc_in_2d(affine):
    mask = disc(41, 15)
    (lesion,) = find_lesions(mask * 0.9, affine)
    # The disc holds (±15, 0): its diameter is 2r pixels, and no two points are farther apart.
    assert lesion["diameter_mm"] == pytest.approx(30 * 0.5)
    assert lesion["area_mm2"] == pytest.approx(mask.sum() * 0.25)
    assert "volume_mm3" not in lesion
    assert lesion["centroid_voxel"] == pytest.approx([20, 20])
    assert len(lesion["centroid_mm"]) == affine.shape[0] - 1  # world position, 3D for a 4x4 affine
    assert lesion["centroid_mm"][:2] == pytest.approx([10, 10])


@pytest.mark.parametrize("radius_mm, spacing", [(6.0, (2.0, 1.0, 1.5)), (12.0, (1.0, 1.0, 1.0))])
def test_ball_in_3d(radius_mm, spacing):
    # A ball in mm whose radius is a whole number of voxels along every axis: its poles are
    # voxel centres, so the diameter is exactly 2R. The second one is large (hull path).
    shape = [int(2 * radius_mm / s) + 5 for s in spacing]
    grids = np.meshgrid(*[(np.arange(n) - n // 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    ball = sum(g ** 2 for g in grids) <= radius_mm ** 2
    (lesion,) = find_lesions(ball * 0.7, diag(*spacing))
    assert lesion["diameter_mm"] == pytest.approx(2 * radius_mm)
    assert lesion["volume_mm3"] == pytest.approx(ball.sum() * np.prod(spacing))
    assert lesion["volume_mm3"] == pytest.approx(4 / 3 * math.pi * radius_mm ** 3, rel=0.1)


def test_hull_diameter_equals_all_pairs_on_irregular_blobs(monkeypatch):
    rng = np.random.default_rng(1)
    noise = ndimage.gaussian_filter(rng.normal(size=(40, 40, 40)), 3)
    prob = (noise > np.percentile(noise, 80)).astype(np.float32)
    prob[:, :, 20] = np.where(disc(40, 18), 1.0, prob[:, :, 20])  # also a flat, one-slice-thick part
    flat = np.zeros((1, 60, 60), np.float32)
    flat[0] = disc(60, 27)  # a flat component: no full-dimensional hull
    affine = np.eye(4)
    affine[:3, :3] = rotation_z(20) @ np.diag([0.8, 0.6, 2.0])
    for p in (prob, flat):
        hull = find_lesions(p, affine)
        assert max(lesion["n_voxels"] for lesion in hull) > lesions_module._EXACT_LIMIT
        monkeypatch.setattr(lesions_module, "_EXACT_LIMIT", 10 ** 9)
        exact = find_lesions(p, affine)
        monkeypatch.undo()
        assert [x["diameter_mm"] for x in hull] == pytest.approx([x["diameter_mm"] for x in exact])
    # And the all-pairs answer itself, checked against scipy on one blob.
    lesions, labels = label_lesions(prob, affine)
    voxels = np.argwhere(labels == lesions[-1]["label"])
    assert lesions[-1]["diameter_mm"] == pytest.approx(pdist(voxels @ affine[:3, :3].T).max() if len(voxels) > 1 else 0)


def test_two_blobs_are_two_lesions_sorted_by_probability():
    prob = np.zeros((20, 20), np.float32)
    prob[2:5, 2:5] = 0.6
    prob[3, 3] = 0.7  # max 0.7, mean (8 * 0.6 + 0.7) / 9
    prob[10:14, 10:12] = 0.95
    prob[15, 2], prob[16, 3] = 0.55, 0.55  # diagonal neighbours: one lesion (full connectivity)
    lesions, labels = label_lesions(prob, diag(1, 1))
    assert [x["probability"] for x in lesions] == pytest.approx([0.95, 0.7, 0.55])
    assert lesions[1]["mean_probability"] == pytest.approx((8 * 0.6 + 0.7) / 9)
    assert [x["label"] for x in lesions] == [1, 2, 3]
    assert [int((labels == x["label"]).sum()) for x in lesions] == [8, 9, 2]
    assert lesions[2]["diameter_mm"] == pytest.approx(math.sqrt(2))
    assert lesions[0]["bbox_voxel"] == [10, 10, 14, 12]
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_threshold_is_inclusive_and_empty_maps_have_no_lesions():
    prob = np.zeros((6, 6, 6), np.float32)
    prob[1, 1, 1] = 0.5
    prob[4, 4, 4] = 0.49
    assert [x["n_voxels"] for x in find_lesions(prob, np.eye(4), threshold=0.5)] == [1]
    assert find_lesions(prob, np.eye(4), threshold=0.6) == []
    lesions, labels = label_lesions(np.zeros((4, 4)), np.eye(3))
    assert lesions == [] and not labels.any()


def test_min_size_is_in_mm_and_inclusive():
    prob = np.zeros((20, 20), np.float32)
    prob[1:3, 1:3] = 0.9  # 4 pixels of 2 x 2 mm = 16 mm²
    prob[10:13, 10:13] = 0.8  # 9 pixels = 36 mm²
    affine = diag(2.0, 2.0)
    assert [x["area_mm2"] for x in find_lesions(prob, affine)] == [16.0, 36.0]
    assert [x["area_mm2"] for x in find_lesions(prob, affine, min_size=16.0)] == [16.0, 36.0]
    assert [x["area_mm2"] for x in find_lesions(prob, affine, min_size=20.0)] == [36.0]
    lesions, labels = label_lesions(prob, affine, min_size=20.0)
    assert lesions[0]["label"] == 1 and set(np.unique(labels)) == {0, 1}  # dropped ones are not labelled


def test_oblique_affine_is_used_fully():
    affine = np.eye(4)
    affine[:3, :3] = rotation_z(30) @ np.diag([0.5, 0.5, 2.0])
    affine[:3, 3] = [100.0, -50.0, 7.0]
    prob = np.zeros((10, 10, 10), np.float32)
    prob[1:8, 4, 4] = 0.9  # 7 voxels along axis 0
    prob[6, 8, 1:6] = 0.6  # 5 voxels along the 2 mm axis, separate
    first, second = find_lesions(prob, affine, class_index=2)
    assert first["diameter_mm"] == pytest.approx(6 * 0.5)
    assert second["diameter_mm"] == pytest.approx(4 * 2.0)
    assert first["volume_mm3"] == pytest.approx(7 * 0.5 * 0.5 * 2.0)
    assert first["centroid_mm"] == pytest.approx(list(affine @ [4, 4, 4, 1])[:3])
    assert first["class_index"] == 2
    # A 45° diagonal in a 2D plane with 0.5 x 2 mm pixels: sqrt((4·0.5)² + (4·2)²).
    diagonal = np.zeros((6, 6))
    diagonal[np.arange(5), np.arange(5)] = 1.0
    assert find_lesions(diagonal, diag(0.5, 2.0))[0]["diameter_mm"] == pytest.approx(math.hypot(2, 8))
    # A sheared affine (as from a tilted CT gantry): axes not orthogonal, so per-axis spacing is
    # not enough. Pixel (k, k) sits at (1.5 k, k) mm; the pixel area is |det| = 1 mm².
    sheared = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    (lesion,) = find_lesions(diagonal, sheared)
    assert lesion["diameter_mm"] == pytest.approx(4 * math.hypot(1.5, 1.0))
    assert lesion["area_mm2"] == pytest.approx(5.0)


def test_accepts_metatensors_and_torch_affines():
    prob = np.zeros((8, 8, 8), np.float32)
    prob[2:5, 2:5, 2:5] = 0.75
    affine = diag(0.8, 0.8, 3.0)
    expected = find_lesions(prob, affine)
    got = find_lesions(MetaTensor(torch.from_numpy(prob), affine=torch.from_numpy(affine)), torch.from_numpy(affine))
    assert got == expected


def test_outputs_are_json_safe_and_the_table_round_trips(tmp_path):
    prob = np.zeros((10, 10, 10), np.float32)
    prob[1:4, 1:4, 1:4] = 0.9
    prob[7, 7, 7] = 0.6
    lesions = find_lesions(prob, diag(1, 1, 2))
    assert json.loads(json.dumps(lesions, allow_nan=False)) == lesions
    rows = [{"input": "scan1.nii.gz", **x} for x in lesions]
    write_lesion_table(tmp_path / "lesions.csv", rows)
    with open(tmp_path / "lesions.csv", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert len(read) == 2 and read[0]["input"] == "scan1.nii.gz"
    assert float(read[0]["centroid_z_mm"]) == pytest.approx(4.0)
    assert float(read[0]["volume_mm3"]) == pytest.approx(54.0)
    assert read[1]["bbox_voxel_5"] == "8"
    assert float(read[0]["diameter_mm"]) == pytest.approx(lesions[0]["diameter_mm"])
    write_lesion_table(tmp_path / "none.csv", [])
    assert (tmp_path / "none.csv").read_text().startswith("label,")


def test_a_speckled_map_reports_only_the_most_probable_lesions(caplog):
    """A poorly trained model can threshold a CT into a million specks: at most max_lesions are
    measured, the most probable ones, and the label map holds exactly those."""
    rng = np.random.default_rng(0)
    prob = np.zeros((40, 40, 40), np.float32)
    prob[::2, ::2, ::2] = rng.uniform(0.5, 1.0, (20, 20, 20))  # 8,000 isolated voxels
    every, _ = label_lesions(prob, np.eye(4), max_lesions=10_000)
    assert len(every) == 8000
    with caplog.at_level("WARNING"):
        top, labels = label_lesions(prob, np.eye(4), max_lesions=50)
    assert "8000 components" in caplog.text and "kept the 50 most probable" in caplog.text
    assert [x["probability"] for x in top] == [x["probability"] for x in every[:50]]
    assert [x["centroid_voxel"] for x in top] == [x["centroid_voxel"] for x in every[:50]]
    assert set(np.unique(labels)) == set(range(51)) and int((labels > 0).sum()) == 50
    assert find_lesions(prob, np.eye(4), max_lesions=3) == top[:3]


@pytest.mark.parametrize("prob, affine, kwargs, message", [
    (np.zeros((2, 4, 4, 4)), np.eye(4), {}, "2D or 3D"),
    (np.full((4, 4), 3.0), np.eye(3), {}, "logits"),
    (np.full((4, 4), np.nan), np.eye(3), {}, "NaN"),
    (np.zeros((4, 4, 4)), np.eye(3), {}, "affine"),
    (np.zeros((4, 4)), np.diag([1.0, 0.0, 1.0]), {}, "singular"),
    (np.zeros((4, 4)), np.eye(3), {"threshold": 0.0}, "threshold"),
    (np.zeros((4, 4)), np.eye(3), {"min_size": -1.0}, "minimum"),
    (np.zeros((4, 4)), np.eye(3), {"max_lesions": 0}, "maximum lesion count"),
])
def test_invalid_inputs_are_user_errors(prob, affine, kwargs, message):
    with pytest.raises(MedsightError, match=message):
        find_lesions(prob, affine, **kwargs)
