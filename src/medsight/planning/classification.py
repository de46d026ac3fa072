"""A planned default for classification: a strong model for any data set without a config.

``fingerprint`` reads the training split, or a fixed sample of 256 images of a larger one
(2D/3D, size, channels, classes and their balance, number of cases, intensity range and
modality); ``plan_classification`` chooses what the
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
from typing import Any, Iterable, Sequence

import numpy as np

from medsight.config import RunConfig
from medsight.planning.finetune import plan_finetune

SMALL_INPUT = 64  # up to this size (px), keep the native resolution and a 3x3-stem ResNet
MAX_INPUT_3D = 64  # larger volumes are resized down to this (CPU budget)
# 2D inputs above SMALL_INPUT: the largest of these sides (px) at which MIN_EPOCHS epochs of
# the training set fit the time budget, at PIXELS_PER_SECOND (ResNet-18 width 16, fp32 on
# two cores: the slowest CPU kind, so the plan is the same on every machine). A set of more
# than EPOCH_CAP images counts as EPOCH_CAP: a large set learns more per epoch.
INPUT_SIDES_2D = (512, 448, 384, 320, 256, 224, 192, 160, 128)
PIXELS_PER_SECOND = 2.5e6
MIN_EPOCHS, EPOCH_CAP = 20, 2000
FINGERPRINT_CASES = 256  # images read for the fingerprint (a fixed sample of larger sets)
# largest/smallest class count above which the loss is class-weighted. Balanced weights
# trade accuracy and calibration for the rare classes: on RetinaMNIST (7.4:1) the planned
# model without them scored ACC 0.52 instead of 0.42, ECE 0.08 instead of 0.13 and AUC 0.739
# instead of 0.725 (README: Benchmarks), so only severe imbalance gets them.
IMBALANCE = 10.0
DEFAULT_MINUTES = 10.0


def fingerprint_sample(n: int) -> list[int]:
    """The indices of the training cases the fingerprint reads (all of a small set)."""
    if n <= FINGERPRINT_CASES:
        return list(range(n))
    return sorted(np.random.default_rng(0).choice(n, FINGERPRINT_CASES, replace=False).tolist())


def fingerprint(cases: Iterable[dict], class_names: Sequence[str],
                labels: Sequence[int] | None = None) -> dict[str, Any]:
    """What the planner needs from loaded training cases (``image`` MetaTensor), read once
    each: all of a small set or the ``fingerprint_sample`` of a large one; ``labels`` of all
    training cases (default: the cases' own)."""
    if labels is None:
        cases = list(cases)
        labels = [int(it["label"]) for it in cases]
    shapes, channels, modalities, values = [], Counter(), Counter(), []
    for case in cases:
        image = case["image"]
        shapes.append(list(image.shape[1:]))
        channels[int(image.shape[0])] += 1
        modalities[str(image.meta.get("modality") or "OT")] += 1
        flat = np.asarray(image).ravel()
        # a copy: a strided view would keep the whole image alive (256 X-rays of 1024^2: 1 GB)
        values.append(flat[:: max(7, len(flat) // 20_000)].copy())  # at most ~20,000 values an image
    shapes = np.array(shapes)
    n_cases = len(labels)
    counts = Counter(int(y) for y in labels)
    values = np.concatenate(values)
    return {
        "n_cases": n_cases, "n_read": len(shapes), "spatial_dims": int(shapes.shape[1]),
        "channels": channels.most_common(1)[0][0],
        "shape_median": np.median(shapes, axis=0).tolist(), "shape_min": shapes.min(0).tolist(),
        "shape_max": shapes.max(0).tolist(), "modality": modalities.most_common(1)[0][0],
        "class_counts": {class_names[k] if k < len(class_names) else str(k): counts.get(k, 0)
                         for k in range(max(len(class_names), max(counts) + 1))},
        "intensity": {"min": float(values.min()), "p00_5": float(np.percentile(values, 0.5)),
                      "p99_5": float(np.percentile(values, 99.5)), "max": float(values.max()),
                      "integer": bool(np.all(np.mod(values[:10000], 1) == 0))},
    }


def plan_classification(fp: dict[str, Any], cfg: RunConfig, minutes: float | None = None) -> dict[str, Any]:
    """Planned values (dotted config keys); the caller keeps only those the config leaves empty."""
    dims = int(cfg.model.spatial_dims or fp["spatial_dims"])
    budget = float(minutes or cfg.train.time_budget_minutes or DEFAULT_MINUTES)
    given = cfg.transforms.spatial_size
    # a size the config sets is the one the network and batch are planned for
    size = [int(s) for s in given] if given and len(given) == dims else _input_size(fp, dims, budget)
    counts = [c for c in fp["class_counts"].values() if c > 0]
    planned: dict[str, Any] = {
        "model.spatial_dims": dims,
        "train.batch_size": _batch_size(dims, size),
        "train.monitor": "val_auc",
        "train.optimizer": "adamw", "train.lr": 1e-3, "train.weight_decay": 1e-4,
        "train.schedule": "cosine", "train.warmup_epochs": 2,
        "train.class_weights": "balanced" if counts and max(counts) / max(min(counts), 1) > IMBALANCE else "none",
        "transforms.augment": _augment(dims),
    }
    if cfg.model.name is None:  # a chosen model keeps its own options
        planned.update(planned_model(size))
    if cfg.train.epochs is None:  # epochs and budget go together: the budget decides the epochs
        planned["train.epochs"] = 200
        planned["train.time_budget_minutes"] = budget
    if cfg.transforms.intensity is None:
        planned.update(_intensity(fp))
    sampled = fp.get("n_read", fp["n_cases"]) < fp["n_cases"]  # unread images may differ in size
    if cfg.transforms.spatial_size is None and (size != [int(s) for s in fp["shape_median"]]
                                                 or fp["shape_min"] != fp["shape_max"] or sampled):
        planned["transforms.spatial_size"] = size
        if dims == 2 and max(size) > SMALL_INPUT:
            planned["transforms.resize"] = "fit"  # keep the aspect ratio, pad the rest
    planned.update(plan_finetune(cfg, planned, fp))  # model.pretrained: a gentler start
    return planned


def _input_size(fp: dict[str, Any], dims: int, minutes: float = DEFAULT_MINUTES) -> list[int]:
    """Small images keep their size; larger 2D ones get the longest side that the budget
    affords (``INPUT_SIDES_2D``) with the median aspect ratio; 3D is capped at MAX_INPUT_3D."""
    median = [float(s) for s in fp["shape_median"]]
    if max(median) <= (SMALL_INPUT if dims == 3 else INPUT_SIDES_2D[-1]):
        return [int(s) for s in median]
    if dims == 3:
        scale = min(1.0, MAX_INPUT_3D / max(median))
        return [max(8, int(round(s * scale / 4)) * 4) if scale < 1 else int(s) for s in median]
    n = min(int(fp["n_cases"]), EPOCH_CAP)
    fits = [side for side in INPUT_SIDES_2D
            if side <= max(median) and minutes * 60 * PIXELS_PER_SECOND / (n * side * side) >= MIN_EPOCHS]
    side = fits[0] if fits else INPUT_SIDES_2D[-1]
    scale = side / max(median)
    return [max(32, int(round(s * scale / 32)) * 32) for s in median]


def _batch_size(dims: int, size: Sequence[int]) -> int:
    """64 (2D) or 32 (3D) images, fewer for large 2D inputs so a batch's activations stay
    within about a gigabyte (ResNet-18 at 512 px holds ~20 MB an image for backprop)."""
    if dims == 3:
        return 32
    return int(max(16, min(64, 64 * 256**2 // math.prod(size))))


def planned_model(size: Sequence[int]) -> dict[str, Any]:
    """The planned network for an input size (2D or 3D): a 3x3-stem ResNet-18 for small inputs,
    and a width of 32 for small 2D inputs, narrower where each image costs more (3D, or larger
    inputs), so a budget of minutes still holds tens of epochs."""
    pixels = math.prod(size)
    width = 16 if len(size) == 3 else 32 if pixels <= SMALL_INPUT**2 else 24 if pixels <= 96**2 else 16
    return {"model.name": "resnet18-small" if max(size) <= SMALL_INPUT else "resnet18", "model.options.width": width}


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
