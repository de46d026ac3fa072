"""The classification planner: deterministic, sensible per data kind, never overriding the user."""

import numpy as np
import pytest
import torch

from medsight.config import config_from_dict
from medsight.io.image import make_image
from medsight.planning import apply_plan, open_keys
from medsight.planning.classification import fingerprint, plan_classification


def _items(shape, n=40, classes=(0, 1), dtype=np.uint8, modality="OT", seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        arr = rng.integers(0, 256, shape).astype(dtype)
        items.append({"image": make_image(arr, modality=modality), "label": classes[i % len(classes)]})
    return items


def _plan(items, names=("a", "b"), minutes=None, **cfg):
    config = config_from_dict(cfg)
    fp = fingerprint(items, list(names))
    return open_keys(config, plan_classification(fp, config, minutes)), fp


def test_same_fingerprint_same_plan_whatever_the_item_order():
    items = _items((1, 28, 28))
    a, _ = _plan(items)
    b, _ = _plan(items[::-1])
    assert a == b


def test_grey_rgb_and_3d_sets_get_different_sensible_plans():
    grey, fp_grey = _plan(_items((1, 28, 28)))
    rgb, fp_rgb = _plan(_items((3, 28, 28)), names=("0", "1", "2", "3", "4"))
    vol, fp_vol = _plan(_items((1, 28, 28, 28)))
    assert fp_grey["channels"] == 1 and fp_rgb["channels"] == 3 and fp_vol["spatial_dims"] == 3
    assert grey["model.spatial_dims"] == 2 and vol["model.spatial_dims"] == 3
    assert grey["model.name"] == "resnet18-small" and grey["model.options.width"] == 32
    assert vol["model.options.width"] < grey["model.options.width"]  # 3D costs more per image
    assert vol["train.batch_size"] < grey["train.batch_size"]
    assert grey["transforms.intensity"] == "scale01" and grey["transforms.intensity_range"] == [0.0, 255.0]
    assert len(vol["transforms.augment"]["flip"]) == 3 and len(grey["transforms.augment"]["flip"]) == 2
    assert "transforms.spatial_size" not in grey  # 28x28 is kept


def test_large_images_keep_their_aspect_at_the_resolution_the_budget_affords():
    big, _ = _plan(_items((1, 300, 400), n=6))  # few images: the largest side up to the image's own
    assert big["transforms.spatial_size"] == [288, 384] and big["transforms.resize"] == "fit"
    assert big["model.name"] == "resnet18" and big["train.batch_size"] < 64
    fp = fingerprint(_items((1, 300, 400), n=4), ["a", "b"], labels=[0, 1] * 1000)  # 2,000 images
    short = plan_classification(fp, config_from_dict({}), minutes=2)
    long = plan_classification(fp, config_from_dict({}), minutes=60)
    assert max(short["transforms.spatial_size"]) < max(long["transforms.spatial_size"]) <= 400
    assert fp["n_cases"] == 2000 and fp["n_read"] == 4
    mid, _ = _plan(_items((1, 100, 120), n=6))  # up to 128 px: the native size, as before
    assert "transforms.spatial_size" not in mid and "transforms.resize" not in mid


def test_a_size_set_in_the_config_is_the_one_the_network_and_batch_are_planned_for():
    items = _items((1, 300, 400), n=6)  # planned alone: 288x384, a ResNet-18 of width 16
    small, _ = _plan(items, transforms={"spatial_size": [48, 64]})
    assert small["model.name"] == "resnet18-small" and small["model.options.width"] == 32
    assert small["train.batch_size"] == 64 and "transforms.spatial_size" not in small
    mid, _ = _plan(items, transforms={"spatial_size": [72, 96]})
    assert mid["model.name"] == "resnet18" and mid["model.options.width"] == 24


def test_ct_gets_a_window():
    ct_items = _items((1, 32, 32), dtype=np.float32)
    for it in ct_items:
        it["image"] = make_image(np.asarray(it["image"]) * 8 - 1000, modality="CT")
    ct, _ = _plan(ct_items)
    assert ct["transforms.intensity"] == "window"
    assert ct["transforms.window"]["width"] > 500


def test_only_severely_imbalanced_classes_are_weighted():
    severe, _ = _plan(_items((1, 28, 28), n=60, classes=(0,) * 19 + (1,)))
    assert severe["train.class_weights"] == "balanced"
    mild, _ = _plan(_items((1, 28, 28), n=60, classes=(0,) * 4 + (1,)))
    assert mild["train.class_weights"] == "none"


def test_the_config_always_wins_and_the_budget_decides_the_epochs():
    items = _items((1, 28, 28))
    plan, _ = _plan(items, minutes=3.0, model={"name": "simple-cnn"}, train={"lr": 0.01},
                    transforms={"intensity": "zscore"})
    assert "model.name" not in plan and "model.options.width" not in plan
    assert "train.lr" not in plan and "transforms.intensity" not in plan and "transforms.intensity_range" not in plan
    assert plan["train.time_budget_minutes"] == 3.0 and plan["train.epochs"] >= 50
    fixed, _ = _plan(items, train={"epochs": 7})
    assert "train.epochs" not in fixed and "train.time_budget_minutes" not in fixed
    resolved = apply_plan(config_from_dict({"train": {"lr": 0.01}, "model": {"name": "simple-cnn"}}), plan)
    assert resolved.train.lr == 0.01 and resolved.model.name == "simple-cnn"
    assert resolved.transforms.augment is not None and resolved.transforms.augment.enabled


@pytest.mark.slow
def test_a_time_budget_ends_training_in_time(tmp_path):
    import time

    from medsight.training.run import train_run
    from tests.conftest import tiny_config

    cfg = tiny_config(train={"epochs": 500, "time_budget_minutes": 0.25, "precision": "fp32"},
                      model={"name": "resnet18-small", "options": {"width": 8}},
                      data={"synthetic": {"n_train": 64, "n_val": 16, "n_test": 8, "size": 32}})
    t0 = time.perf_counter()
    run = train_run(cfg, tmp_path / "run")
    seconds = time.perf_counter() - t0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert 1 <= state["epoch"] == state["epochs"] < 500  # stopped by the budget, schedule fitted
    assert state["seconds"] <= 0.25 * 60 * 1.1  # the loop itself ends in time
    assert seconds < 0.25 * 60 + 30  # data preparation on top
    assert (run / "checkpoints" / "best.pt").is_file()


def test_the_fingerprint_keeps_no_image_it_has_read():
    """It reads a sample of full-size images one at a time: 256 X-rays of 1024^2 held at once
    would be 1 GB."""
    import tracemalloc

    def stream(n=16, rng=np.random.default_rng(0)):
        for i in range(n):  # float32 arrays: make_image shares their (traced) memory
            yield {"image": make_image(rng.random((1, 512, 512), dtype=np.float32)), "label": i % 2}

    tracemalloc.start()
    try:
        fp = fingerprint(stream(), ["a", "b"], labels=[i % 2 for i in range(16)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fp["n_read"] == 16
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.0f} MB for 1 MB images"
