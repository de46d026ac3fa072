"""Shared fixtures: tiny configs and one small trained run reused by several tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsight.config import RunConfig, config_from_dict

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
    from medsight.training.run import train_run

    cfg = tiny_config(train={"epochs": 6},
                      data={"synthetic": {"n_train": 400, "n_val": 100, "n_test": 100, "size": 64}})
    return train_run(cfg, tmp_path_factory.mktemp("runs") / "run")
