"""Shared fixtures: tiny configs and one small trained run reused by several tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medsight.config import RunConfig, config_from_dict
from medsight.runtime import PRECISION_ENV

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Tests whose outcome depends on the training precision: they train a model or judge what a
# trained model does. `pytest -m precision --precision fp32` reruns them in fp32 on a bf16 CPU.
PRECISION_FOLDERS = ("training", "inference", "cli")


def pytest_addoption(parser):
    parser.addoption("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                     help="Force the precision that `train.precision: auto` resolves to "
                          f"(sets {PRECISION_ENV} for this run and its subprocesses).")


def pytest_configure(config):
    forced = config.getoption("--precision")
    if forced != "auto":
        os.environ[PRECISION_ENV] = forced


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        fixtures = getattr(item, "fixturenames", ())
        if folder in PRECISION_FOLDERS or "trained_run" in fixtures or "segmentation_run" in fixtures:
            item.add_marker(pytest.mark.precision)


def pytest_report_header(config):
    from medsight.runtime import cpu_description, resolve_precision

    cpu = cpu_description()
    return (f"medsight: {cpu['model']}, native bf16: {cpu['bf16_native']}; "
            f"precision auto -> {resolve_precision('auto')}")


def tiny_config(**sections) -> RunConfig:
    """A fast synthetic run: small sets and a narrow ResNet-18 (about 1 s per epoch)."""
    raw = {
        "name": "tiny",
        "data": {"dataset": "synthetic", "synthetic": {"n_train": 160, "n_val": 60, "n_test": 60, "size": 64}},
        "transforms": {"intensity": "window", "window": {"preset": "lung"}},
        "model": {"name": "resnet18-small", "options": {"width": 16}},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "seed": 0},
        "evaluation": {"n_bootstrap": 200},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A classifier trained briefly on the synthetic set (shared, read-only for tests)."""
    from medsight.evaluation.calibrate import calibrate_run
    from medsight.training.run import train_run

    # Trained well enough (val AUC ~0.9 in fp32 and bf16) that tests judging what it does, such
    # as where Grad-CAM puts the heat, hold on both CPU kinds rather than by luck.
    cfg = tiny_config(train={"epochs": 8},
                      transforms={"augment": {"rotate_degrees": 10, "flip": [1], "zoom": 0.1, "prob": 0.5}},
                      data={"synthetic": {"n_train": 500, "n_val": 100, "n_test": 100, "size": 64}})
    return train_run(cfg, tmp_path_factory.mktemp("runs") / "run", calibrate=calibrate_run)


def tiny_segmentation_config(**sections) -> RunConfig:
    """A small 2D U-Net on the synthetic nodule slices (a few seconds per epoch)."""
    raw = {
        "name": "tiny-seg", "task": "segmentation",
        "data": {"dataset": "synthetic",
                 "synthetic": {"n_train": 160, "n_val": 32, "n_test": 32, "size": 64, "nodule_fraction": 0.7}},
        "transforms": {"window": {"preset": "lung"}},  # intensity and patch size: planned
        "model": {"name": "unet", "options": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1,
                                              "norm": "batch"}},
        "train": {"epochs": 6, "batch_size": 16, "lr": 0.01, "optimizer": "adamw", "seed": 0,
                  "precise_bn_samples": 64},
        "segmentation": {"iterations_per_epoch": 20, "lesions": {"min_size": 20}},
        "evaluation": {"n_bootstrap": 200},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


@pytest.fixture(scope="session")
def segmentation_run(tmp_path_factory) -> Path:
    """A 2D U-Net segmenting nodules on the synthetic slices (shared, read-only for tests)."""
    from medsight.training.run import train_run

    return train_run(tiny_segmentation_config(), tmp_path_factory.mktemp("runs") / "seg")
