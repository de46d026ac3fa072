"""The self-configuring plan: deterministic, sensible for 2D, isotropic and anisotropic 3D sets,
and never overriding what the config sets."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from medsight.config import config_from_dict
from medsight.io import make_image
from medsight.planning import apply_plan, open_keys
from medsight.planning.segmentation import fingerprint, plan_segmentation
from medsight.transforms import preprocessing

NAMES = ["background", "a", "b"]


def seg_config(**sections):
    raw = {"task": "segmentation", "model": {"name": "dynunet", "spatial_dims": 3}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


def _case(rng, shape, spacing, modality="MR", offset=0.0):
    """An image with two labelled boxes whose intensities differ from the background."""
    mask = np.zeros(shape, np.uint8)
    centre = [s // 2 for s in shape]
    mask[tuple(slice(c - 3, c) for c in centre)] = 1
    mask[tuple(slice(c, c + 2) for c in centre)] = 2
    image = rng.normal(offset, 10, shape) + 100.0 * mask
    return {"image": make_image(image[None], spacing=spacing, modality=modality),
            "mask": make_image(mask[None], spacing=spacing, modality=modality)}


def _cases(shapes, spacings, modality="MR", seed=0):
    rng = np.random.default_rng(seed)
    return [_case(rng, s, sp, modality, offset=10.0 * i) for i, (s, sp) in enumerate(zip(shapes, spacings))]


def _fp(shape_median, spacing_min, spacing_max=None, spacing_median=None, modality="MR", n=20):
    spacing_max = spacing_max or spacing_min
    return {"n_cases": n, "modality": modality,
            "spacing_median": spacing_median or spacing_min, "spacing_min": spacing_min,
            "spacing_max": spacing_max, "shape_median": shape_median, "shape_min": shape_median,
            "shape_max": shape_median,
            "foreground_intensity": [{"p00_5": -900.0, "p50": -100.0, "p99_5": 300.0, "mean": -120.0,
                                      "std": 200.0}],
            "class_fractions": {"background": 0.99, "a": 0.006, "b": 0.004}}


def test_fingerprint_and_plan_are_deterministic_and_independent_of_case_order():
    shapes = [(30, 44, 32), (36, 50, 36), (40, 52, 38), (34, 48, 35)]
    cases = _cases(shapes, [(1.0, 1.0, 1.0)] * 4)
    cfg = seg_config()
    fp = fingerprint(cases, NAMES)
    assert fingerprint(cases, NAMES) == fp
    # the same cases in another order (as a different file listing would give) fingerprint alike
    assert fingerprint(cases[::-1], NAMES) == fp
    assert fingerprint([cases[i] for i in (2, 0, 3, 1)], NAMES) == fp
    assert fp["n_cases"] == 4 and fp["shape_median"] == [35.0, 49.0, 35.5]
    assert set(fp["class_fractions"]) == set(NAMES)
    assert sum(fp["class_fractions"].values()) == pytest.approx(1.0)
    plan = plan_segmentation(fp, cfg)
    assert plan_segmentation(copy.deepcopy(fp), cfg) == plan
    assert plan_segmentation(fingerprint(cases[::-1], NAMES), cfg) == plan


def test_fingerprint_measures_foreground_intensities_per_channel():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 5:10] = 1
    image = np.stack([np.where(mask, 100.0, 0.0), np.where(mask, -5.0, 7.0)]) + rng.normal(0, 0.01, (2, 20, 20))
    fp = fingerprint([{"image": make_image(image), "mask": make_image(mask[None])}], ["background", "x"])
    first, second = fp["foreground_intensity"]
    assert first["p50"] == pytest.approx(100.0, abs=0.1)  # inside the mask only
    assert second["p50"] == pytest.approx(-5.0, abs=0.1)
    assert fp["class_fractions"]["x"] == pytest.approx(25 / 400)


def test_2d_plan_covers_the_slice_in_a_batch_of_many():
    cfg = seg_config(model={"name": "dynunet", "spatial_dims": 2})
    plan = plan_segmentation(_fp([64.0, 64.0], [0.55, 0.55]), cfg)
    assert plan["segmentation.patch_size"] == [64, 64]
    assert plan["train.batch_size"] >= 16  # small 2D patches: a large batch
    strides = plan["model.options.strides"]
    assert strides[0] == [1, 1] and all(s == [2, 2] for s in strides[1:])
    assert 64 / 2 ** (len(strides) - 1) >= 4  # the deepest map keeps >= 4 pixels
    assert all(k == [3, 3] for k in plan["model.options.kernel_size"])
    assert "transforms.spacing" not in plan  # one spacing in the set: keep the grid
    assert plan["transforms.intensity"] == "percentile"


def test_isotropic_3d_plan_hippocampus_like():
    cfg = seg_config()
    plan = plan_segmentation(_fp([35.0, 50.0, 36.0], [1.0, 1.0, 1.0]), cfg)
    patch = plan["segmentation.patch_size"]
    assert patch == [40, 56, 40]
    strides = plan["model.options.strides"]
    pools = len(strides) - 1
    assert pools == 3 and all(s == [2, 2, 2] for s in strides[1:])
    assert all(p % 2**pools == 0 for p in patch)
    assert all(k == [3, 3, 3] for k in plan["model.options.kernel_size"])
    filters = plan["model.options.filters"]
    assert len(filters) == len(strides) and filters == sorted(filters) and filters[0] == 16  # CPU: 16
    assert plan_segmentation(_fp([35.0, 50.0, 36.0], [1.0, 1.0, 1.0]), cfg, on_cpu=False)["model.options.filters"][0] == 32
    assert plan["train.batch_size"] >= 2
    assert plan["model.options.deep_supervision"] is True


def test_anisotropic_3d_plan_pools_the_fine_axes_first():
    cfg = seg_config()
    plan = plan_segmentation(_fp([256.0, 256.0, 40.0], [0.7, 0.7, 5.0]), cfg)
    patch = plan["segmentation.patch_size"]
    strides = plan["model.options.strides"]
    kernels = plan["model.options.kernel_size"]
    assert strides[1] == [2, 2, 1]  # no pooling along the 5 mm axis at first
    assert kernels[0] == [3, 3, 1]  # in-plane kernels only at the finest resolution
    assert kernels[-1][2] == 3  # once in-plane spacing has caught up, z is convolved too
    assert patch[2] < patch[0] and patch[2] < patch[1]  # z covers the fewest voxels
    for axis in range(3):
        pools = sum(s[axis] == 2 for s in strides)
        assert patch[axis] % 2**pools == 0, (axis, patch, strides)
        assert patch[axis] / 2**pools >= 4
    assert np.prod(patch) <= 96 * 128 * 96


def test_target_spacing_only_when_spacings_differ():
    cfg = seg_config()
    alike = plan_segmentation(_fp([40.0, 40.0, 40.0], [1.0, 1.0, 1.0]), cfg)
    assert "transforms.spacing" not in alike
    mixed = _fp([40.0, 40.0, 40.0], [0.8, 0.8, 1.0], spacing_max=[1.2, 1.2, 3.0], spacing_median=[1.0, 1.0, 2.0])
    assert plan_segmentation(mixed, cfg)["transforms.spacing"] == [1.0, 1.0, 2.0]


def test_ct_plans_a_window_from_foreground_percentiles_mr_percentiles():
    cfg = seg_config()
    ct = plan_segmentation(_fp([40.0, 40.0, 40.0], [1.0, 1.0, 1.0], modality="CT"), cfg)
    assert ct["transforms.intensity"] == "window"
    # the window spans the foreground's 0.5-99.5 percentiles: -900 .. 300 HU
    assert ct["transforms.window.level"] == pytest.approx(-300.0)
    assert ct["transforms.window.width"] == pytest.approx(1200.0)
    mr = plan_segmentation(_fp([40.0, 40.0, 40.0], [1.0, 1.0, 1.0], modality="MR"), cfg)
    assert mr["transforms.intensity"] == "percentile"
    assert not any(k.startswith("transforms.window") for k in mr)


def test_planned_ct_window_reaches_the_preprocessing():
    cfg = seg_config()
    planned = open_keys(cfg, plan_segmentation(_fp([40.0, 40.0, 40.0], [1.0, 1.0, 1.0], modality="CT"), cfg))
    applied = apply_plan(cfg, planned)
    assert applied.transforms.intensity == "window"
    assert (applied.transforms.window.level, applied.transforms.window.width) == (-300.0, 1200.0)
    pre = preprocessing(applied.transforms, 3, 1)
    hu = make_image(np.array([-900.0, -300.0, 300.0, 2000.0]).reshape(1, 4, 1, 1))
    assert pre({"image": hu})["image"].flatten().tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_a_window_preset_in_the_config_is_not_overridden():
    cfg = seg_config(transforms={"window": {"preset": "lung"}})
    planned = open_keys(cfg, plan_segmentation(_fp([40.0, 40.0, 40.0], [1.0, 1.0, 1.0], modality="CT"), cfg))
    applied = apply_plan(cfg, planned)
    assert applied.transforms.window.preset == "lung"
    assert applied.transforms.window.level is None and "transforms.window.level" not in planned


def test_mirror_tta_is_planned_in_2d_only_and_a_config_setting_wins():
    fp2, fp3 = _fp([64.0, 64.0], [0.55, 0.55]), _fp([35.0, 50.0, 36.0], [1.0, 1.0, 1.0])
    two_d = seg_config(model={"name": "dynunet", "spatial_dims": 2})
    assert apply_plan(two_d, plan_segmentation(fp2, two_d)).segmentation.mirror_tta is True
    assert apply_plan(seg_config(), plan_segmentation(fp3, seg_config())).segmentation.mirror_tta is False
    off = seg_config(model={"name": "dynunet", "spatial_dims": 2}, segmentation={"mirror_tta": False})
    assert "segmentation.mirror_tta" not in open_keys(off, plan_segmentation(fp2, off))
    assert apply_plan(off, plan_segmentation(fp2, off)).segmentation.mirror_tta is False


def test_only_a_large_top_level_is_recomputed_in_the_backward_pass():
    ct = plan_segmentation(_fp([512.0, 512.0, 300.0], [0.7, 0.7, 1.5], modality="CT"), seg_config())
    assert ct["train.batch_size"] * math.prod(ct["segmentation.patch_size"]) * 16 > 16e6
    assert ct["model.options.recompute_top"] is True
    small = plan_segmentation(_fp([35.0, 50.0, 36.0], [1.0, 1.0, 1.0]), seg_config())
    assert small["model.options.recompute_top"] is False


def test_config_keys_win_over_the_plan():
    cfg = seg_config(segmentation={"patch_size": [32, 32, 32]}, train={"batch_size": 3},
                     transforms={"intensity": "zscore", "spacing": [2.0, 2.0, 2.0]},
                     model={"name": "dynunet", "spatial_dims": 3, "options": {"filters": [8, 16, 32, 64]}})
    fp = _fp([40.0, 40.0, 40.0], [0.8, 0.8, 1.0], spacing_max=[1.2, 1.2, 3.0], modality="CT")
    planned = plan_segmentation(fp, cfg)
    assert planned["segmentation.patch_size"] == [32, 32, 32]  # the planner sizes the net to it
    opened = open_keys(cfg, planned)
    for key in ("segmentation.patch_size", "train.batch_size", "transforms.intensity", "transforms.spacing",
                "model.options.filters"):
        assert key not in opened, key
    assert "model.options.strides" in opened and "segmentation.iterations_per_epoch" in opened
    applied = apply_plan(cfg, planned)  # even given every planned key, set ones stay
    assert applied.segmentation.patch_size == [32, 32, 32] and applied.train.batch_size == 3
    assert applied.transforms.intensity == "zscore" and applied.transforms.spacing == [2.0, 2.0, 2.0]
    assert applied.model.options["filters"] == [8, 16, 32, 64]
    assert applied.model.options["strides"] == planned["model.options.strides"]
    assert applied.segmentation.iterations_per_epoch == planned["segmentation.iterations_per_epoch"]
    # unet: no DynUNet options planned
    unet = plan_segmentation(fp, seg_config(model={"name": "unet", "spatial_dims": 3}))
    assert not any(k.startswith("model.options") for k in unet)


def test_2d_works_on_a_coarser_grid_when_the_budget_affords_few_passes_at_native_resolution():
    """BUSI-like ultrasound (545 cases of ~473 x 562 px) in 30 min: a 3x coarser grid (the
    smallest factor giving MIN_PASSES passes, or the coarsest keeping >= 128 px); small sets,
    fixed epochs and a set spacing stay native."""
    from medsight.planning.segmentation import MIN_SIDE_2D

    busi = dict(shape_median=[473.0, 562.0], spacing_min=[1.0, 1.0], n=545)
    cfg = seg_config(model={"spatial_dims": 2}, train={"time_budget_minutes": 30})
    plan = plan_segmentation(_fp(**busi), cfg)
    assert plan["transforms.spacing"] == [3.0, 3.0]
    assert min(plan["segmentation.patch_size"]) >= MIN_SIDE_2D  # still covers the coarse case
    # more time: a finer grid
    long = plan_segmentation(_fp(**busi), seg_config(model={"spatial_dims": 2}, train={"time_budget_minutes": 600}))
    assert long.get("transforms.spacing", [1.0, 1.0])[0] < 3.0
    # 20 cases are many passes at native resolution; fixed epochs or a set spacing decide themselves
    assert "transforms.spacing" not in plan_segmentation(_fp([473.0, 562.0], [1.0, 1.0], n=20), cfg)
    fixed = seg_config(model={"spatial_dims": 2}, train={"epochs": 10})
    assert "transforms.spacing" not in plan_segmentation(_fp(**busi), fixed)
    own = seg_config(model={"spatial_dims": 2}, train={"time_budget_minutes": 30}, transforms={"spacing": [1.0, 1.0]})
    assert "transforms.spacing" not in open_keys(own, plan_segmentation(_fp(**busi), own))


def test_a_spacing_set_in_the_config_is_the_grid_the_patch_and_network_are_planned_on():
    """BUSI at a 4x coarser grid set by the user (~118 x 140 px): the patch covers that grid, not
    the native 473 x 562 px one, and the network pools it down to the usual deepest map."""
    busi = _fp(shape_median=[473.0, 562.0], spacing_min=[1.0, 1.0], n=545)
    cfg = seg_config(model={"spatial_dims": 2}, train={"time_budget_minutes": 30}, transforms={"spacing": [4.0, 4.0]})
    plan = plan_segmentation(busi, cfg)
    patch = plan["segmentation.patch_size"]
    assert 118 <= patch[0] <= 128 and 140 <= patch[1] <= 160, patch
    native = plan_segmentation(busi, seg_config(model={"spatial_dims": 2}, train={"epochs": 10}))
    assert math.prod(native["segmentation.patch_size"]) > 3 * math.prod(patch)
    deepest = np.array(patch) / np.prod(np.array(plan["model.options.strides"]), axis=0)
    assert deepest.min() >= 4  # MIN_FEATURE
