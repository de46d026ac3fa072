"""A planned default for classification: a strong model for any data set without a config.

``fingerprint`` reads the training split (2D/3D, size, channels, classes and their balance,
number of cases, intensity range and modality); ``plan_classification`` chooses what the
config leaves empty: dimensionality, input size, normalisation, model and width,
augmentation, batch size, class weights, optimiser and schedule, and the time budget
(``train.time_budget_minutes``) that fits the number of epochs to the machine.

The rules were tuned on BreastMNIST, RetinaMNIST and AdrenalMNIST3D only (bench/medmnist.py);
they are stated here so a user can see why a run looks the way it does, and every choice is
overridable with ``--set``. Deterministic: same fingerprint, config and budget, same plan.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from medsight.config import RunConfig

SMALL_INPUT = 64  # up to this size (px), keep the native resolution and a 3x3-stem ResNet
MAX_INPUT_2D, MAX_INPUT_3D = 128, 64  # larger images are resized down to this (CPU budget)
# largest/smallest class count above which the loss is class-weighted. Balanced weights
# trade accuracy and calibration for the rare classes: on RetinaMNIST (7.4:1) the planned
# model without them scored ACC 0.52 instead of 0.42, ECE 0.08 instead of 0.13 and AUC 0.739
# instead of 0.725 (README: Benchmarks), so only severe imbalance gets them.
IMBALANCE = 10.0
DEFAULT_MINUTES = 10.0


def fingerprint(items: Sequence[dict], class_names: Sequence[str]) -> dict[str, Any]:
    """What the planner needs from loaded training items (``image`` MetaTensor, ``label``)."""
    shapes = np.array([list(it["image"].shape[1:]) for it in items])
    channels = Counter(int(it["image"].shape[0]) for it in items).most_common(1)[0][0]
    counts = Counter(int(it["label"]) for it in items)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(items), size=min(len(items), 200), replace=False)
    values = np.concatenate([np.asarray(items[i]["image"]).ravel()[::7] for i in pick])
    modality = Counter(str(it["image"].meta.get("modality") or "OT") for it in items).most_common(1)[0][0]
    return {
        "n_cases": len(items), "spatial_dims": int(shapes.shape[1]), "channels": channels,
        "shape_median": np.median(shapes, axis=0).tolist(), "shape_min": shapes.min(0).tolist(),
        "shape_max": shapes.max(0).tolist(), "modality": modality,
        "class_counts": {class_names[k] if k < len(class_names) else str(k): counts.get(k, 0)
                         for k in range(max(len(class_names), max(counts) + 1))},
        "intensity": {"min": float(values.min()), "p00_5": float(np.percentile(values, 0.5)),
                      "p99_5": float(np.percentile(values, 99.5)), "max": float(values.max()),
                      "integer": bool(np.all(np.mod(values[:10000], 1) == 0))},
    }


def plan_classification(fp: dict[str, Any], cfg: RunConfig, minutes: float | None = None) -> dict[str, Any]:
    """Planned values (dotted config keys); the caller keeps only those the config leaves empty."""
    dims = int(cfg.model.spatial_dims or fp["spatial_dims"])
    size = _input_size(fp, dims)
    counts = [c for c in fp["class_counts"].values() if c > 0]
    planned: dict[str, Any] = {
        "model.spatial_dims": dims,
        "train.batch_size": 64 if dims == 2 else 32,
        "train.monitor": "val_auc",
        "train.optimizer": "adamw", "train.lr": 1e-3, "train.weight_decay": 1e-4,
        "train.schedule": "cosine", "train.warmup_epochs": 2,
        "train.class_weights": "balanced" if counts and max(counts) / max(min(counts), 1) > IMBALANCE else "none",
        "transforms.augment": _augment(dims),
    }
    if cfg.model.name is None:  # a chosen model keeps its own options
        planned["model.name"] = "resnet18-small" if max(size) <= SMALL_INPUT else "resnet18"
        planned["model.options.width"] = _width(fp, dims, size)
    if cfg.train.epochs is None:  # epochs and budget go together: the budget decides the epochs
        planned["train.epochs"] = 200
        planned["train.time_budget_minutes"] = float(minutes or cfg.train.time_budget_minutes or DEFAULT_MINUTES)
    if cfg.transforms.intensity is None:
        planned.update(_intensity(fp))
    if cfg.transforms.spatial_size is None and (size != [int(s) for s in fp["shape_median"]]
                                                 or fp["shape_min"] != fp["shape_max"]):
        planned["transforms.spatial_size"] = size
    return planned


def _input_size(fp: dict[str, Any], dims: int) -> list[int]:
    cap = MAX_INPUT_2D if dims == 2 else MAX_INPUT_3D
    median = [float(s) for s in fp["shape_median"]]
    scale = min(1.0, cap / max(median))
    return [max(8, int(round(s * scale / 4)) * 4) if scale < 1 else int(s) for s in median]


def _width(fp: dict[str, Any], dims: int, size: Sequence[int]) -> int:
    """Network width: 32 for small 2D inputs, narrower where each image costs more
    (3D, or larger inputs), so a budget of minutes still holds tens of epochs."""
    if dims == 3:
        return 16
    pixels = math.prod(size)
    return 32 if pixels <= SMALL_INPUT**2 else 24 if pixels <= 96**2 else 16


def _augment(dims: int) -> dict[str, Any]:
    # Flips along every in-plane axis and mild rotation/zoom/contrast: MedMNIST-style images
    # have no fixed orientation; users with lateral anatomy should set transforms.augment.
    if dims == 2:
        return {"rotate_degrees": 15, "flip": [0, 1], "zoom": 0.1, "contrast": 0.2, "prob": 0.5}
    return {"rotate_degrees": 10, "flip": [0, 1, 2], "zoom": 0.1, "prob": 0.5}


def _intensity(fp: dict[str, Any]) -> dict[str, Any]:
    it = fp["intensity"]
    if str(fp.get("modality")).upper() == "CT" and it["min"] < -200:  # Hounsfield units
        level, width = (it["p00_5"] + it["p99_5"]) / 2, max(it["p99_5"] - it["p00_5"], 1.0)
        return {"transforms.intensity": "window", "transforms.window": {"level": level, "width": width}}
    if it["integer"] and it["min"] >= 0 and it["max"] <= 255:  # 8-bit pictures
        return {"transforms.intensity": "scale01", "transforms.intensity_range": [0.0, 255.0]}
    return {"transforms.intensity": "zscore"}
