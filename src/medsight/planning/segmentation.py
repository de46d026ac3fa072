"""A self-configuring segmentation plan, after nnU-Net (Isensee et al., Nature Methods 2021).

``fingerprint`` summarises the training cases (spacings, shapes, foreground intensities per
channel, class voxel fractions); ``plan_segmentation`` turns it into target spacing,
normalisation, patch size, network depth (strides and kernels), filters, batch size and
iterations per epoch, sized for a CPU: the patch covers the median case when that fits
``MAX_PATCH_VOXELS`` (else it shrinks along its longest axes), the network pools each axis
until it is ~4 voxels deep, and the batch fills ``VOXELS_PER_STEP``. The result is the same
for the same fingerprint and config (no timing, no randomness).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from medsight.config import RunConfig
from medsight.io.image import spacing_of
from medsight.planning.finetune import plan_finetune

MAX_PATCH_VOXELS = {2: 256 * 256, 3: 96 * 128 * 96}
VOXELS_PER_STEP = {2: 32 * 64 * 64, 3: 2 * 48 * 64 * 48}  # a batch's worth of voxels
# Training speed of DynUNet, in patch voxels x (top filters)^2 per second: fp32 on two cores,
# the slowest CPU kind (bench: 88-111 M; bf16 130-210 M), so the plan is the same on every
# machine. With a time budget, an epoch gets the steps that leave MIN_EPOCHS epochs in it.
STEP_RATE = 80e6
LR, WEIGHT_DECAY = 2e-3, 3e-5  # AdamW
MIN_EPOCHS = 30
# 2D at native resolution may leave a budget a few passes over the cases (BUSI's ~500 px
# ultrasound: 4 passes in 30 min), too few to learn from scratch. The plan then works on a
# coarser grid (nnU-Net's low-resolution stage, chosen by budget): the smallest factor that
# affords MIN_PASSES passes, never below MIN_SIDE_2D px on the median case's shorter side.
# Masks go back to the source grid at inference, so Dice is still measured at full resolution.
MIN_PASSES = 40
COARSEN_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0)
MIN_SIDE_2D = 128
DEFAULT_MINUTES = 15.0
MIN_FEATURE = 4  # deepest feature map, voxels per axis (nnU-Net)
MAX_POOLS = 5
# Above this many top-level activation values per step (batch x patch voxels x top filters),
# the top encoder and decoder blocks are recomputed in the backward pass instead of kept
# (models/recompute.py): a 512x512x300 CT's plan has 37M, and its training step's peak memory
# falls by ~250 MB (to ~2.6 GB) for ~10% more time per step; hippocampus and BUSI have 2M or less.
RECOMPUTE_FROM = 16e6
ANISOTROPY = 3.0  # spacing ratio beyond which the coarse axis is treated as such
INTENSITY_SAMPLES = 10_000  # foreground voxels per case for the intensity statistics


def fingerprint(cases: Iterable[dict], class_names: Sequence[str], n_cases: int | None = None) -> dict[str, Any]:
    """Spacings, shapes, foreground intensity statistics and class fractions of loaded cases
    (each ``{"image": MetaTensor (C, *S), "mask": MetaTensor (1, *S)}``), read once each:
    all of them, or a sample of a larger set of ``n_cases``."""
    return combine_summaries((case_summary(case) for case in cases), class_names, n_cases)


def case_summary(case: dict) -> dict[str, Any]:
    """What the fingerprint keeps of one loaded case (small: reading workers send it back)."""
    image, mask = case["image"], case["mask"]
    # uint8 labels counted by torch.bincount, which takes them as they are: numpy's copies
    # them to int64 first (5 GB for the mask of a 512x512x1000 CT)
    labels = torch.as_tensor(np.asarray(mask[0])).to(torch.uint8).reshape(-1)
    fg = torch.nonzero(labels).reshape(-1).numpy()
    sample = None
    if len(fg):
        # evenly spaced foreground voxels: a sample that depends on the case alone, not on
        # the order cases come in (a shared random stream would, and so would the plan)
        pick = fg[np.linspace(0, len(fg) - 1, min(len(fg), INTENSITY_SAMPLES)).round().astype(np.int64)]
        sample = np.asarray(image).reshape(image.shape[0], -1)[:, pick]
    return {"spacing": list(spacing_of(image)), "shape": list(image.shape[1:]), "channels": int(image.shape[0]),
            "modality": image.meta.get("modality") if hasattr(image, "meta") else None,
            "counts": torch.bincount(labels).numpy(), "sample": sample}


def combine_summaries(summaries: Iterable[dict], class_names: Sequence[str],
                      n_cases: int | None = None) -> dict[str, Any]:
    """The fingerprint of the cases whose ``case_summary`` values these are."""
    spacings, shapes, samples, counts = [], [], [], np.zeros(len(class_names))
    modality, n_channels = None, 1
    for summary in summaries:
        n_channels = summary["channels"]
        spacings.append(summary["spacing"])
        shapes.append(summary["shape"])
        modality = modality or summary["modality"]
        found = summary["counts"]
        counts = np.pad(counts, (0, max(0, len(found) - len(counts))))
        counts[:len(found)] += found  # labels past the names too
        if summary["sample"] is not None:
            samples.append(summary["sample"])
    # sorted float64 values: the statistics are then exactly the same for any case order
    values = np.sort(np.concatenate(samples, axis=1).astype(np.float64), axis=1) if samples else np.zeros((1, 1))
    channels = [{"p00_5": float(np.percentile(v, 0.5)), "p50": float(np.median(v)),
                 "p99_5": float(np.percentile(v, 99.5)), "mean": float(v.mean()), "std": float(v.std())}
                for v in values]
    return {
        "n_cases": n_cases if n_cases is not None else len(spacings), "n_read": len(spacings),
        "modality": modality, "channels": n_channels,
        "spacing_median": np.median(spacings, axis=0).round(4).tolist(),
        "spacing_min": np.min(spacings, axis=0).round(4).tolist(),
        "spacing_max": np.max(spacings, axis=0).round(4).tolist(),
        "shape_median": np.median(shapes, axis=0).tolist(),
        "shape_min": np.min(shapes, axis=0).tolist(), "shape_max": np.max(shapes, axis=0).tolist(),
        "foreground_intensity": channels,
        "class_fractions": {n: float(c / max(counts.sum(), 1)) for n, c in
                            zip([*class_names, *map(str, range(len(class_names), len(counts)))], counts)},
    }


def plan_segmentation(fp: dict[str, Any], cfg: RunConfig, on_cpu: bool = True) -> dict[str, Any]:
    """Planned values (dotted config keys) for what ``cfg`` leaves empty; see the module doc.

    ``on_cpu``: 3D networks start at 16 filters instead of nnU-Net's 32 (a third of the time
    per step: three times the steps in a CPU's time budget)."""
    dims = int(cfg.model.spatial_dims or len(fp["shape_median"]))
    # the grid the cases are resampled to: a spacing in the config is the grid the net sees,
    # so the patch, strides and steps are planned on it too
    spacing = list(cfg.transforms.spacing) if cfg.transforms.spacing else _target_spacing(fp)
    factor = _coarsening(fp, cfg, dims, spacing)
    if factor > 1:
        spacing = [round(float(s) * factor, 4) for s in (spacing or fp["spacing_median"])]
    scale = np.array(fp["spacing_median"], dtype=float) / np.array(spacing if spacing else fp["spacing_median"])
    median_shape = np.array(fp["shape_median"], dtype=float) * scale
    target = list(spacing) if spacing else list(fp["spacing_median"])
    patch = cfg.segmentation.patch_size or _patch_size(median_shape, target, dims)
    network = dynunet_options(patch, target, on_cpu)
    base = network["model.options.filters"][0]
    batch = max(2, int(VOXELS_PER_STEP[dims] // math.prod(patch)))
    planned: dict[str, Any] = {
        "model.spatial_dims": dims,
        "model.name": "dynunet",
        "transforms.intensity": _normalisation(fp),
        "transforms.augment": {"rotate_degrees": 15, "zoom": 0.1, "flip": list(range(dims)), "contrast": 0.2,
                               "prob": 0.3},
        "segmentation.patch_size": [int(p) for p in patch],
        "train.batch_size": batch,
        # an epoch sees every case about once, within nnU-Net's 250 iterations (large sets)
        "segmentation.iterations_per_epoch": _iterations(fp, cfg, batch, patch, base),
        "train.optimizer": "adamw", "train.lr": LR, "train.weight_decay": WEIGHT_DECAY,
        "train.schedule": "cosine", "train.warmup_epochs": 2, "train.class_weights": "none",
        # nnU-Net's mirroring at inference: 4 views in 2D (BUSI test Dice 0.702 -> 0.721, same
        # weights); 8 in 3D, where a CT would take 8x as long on a CPU, so it is left to the user
        "segmentation.mirror_tta": dims == 2,
    }
    if cfg.train.epochs is None:  # epochs and budget go together: the budget decides the epochs
        planned["train.epochs"] = 200
        planned["train.time_budget_minutes"] = float(cfg.train.time_budget_minutes or DEFAULT_MINUTES)
    if spacing:
        planned["transforms.spacing"] = spacing
    intensity = cfg.transforms.intensity or planned["transforms.intensity"]
    if intensity == "window" and cfg.transforms.window.preset is None:
        # level and width as keys of their own, so a preset or level in the config wins
        ch = fp["foreground_intensity"][0]
        planned["transforms.window.level"] = round((ch["p00_5"] + ch["p99_5"]) / 2, 2)
        planned["transforms.window.width"] = round(max(ch["p99_5"] - ch["p00_5"], 1.0), 2)
    if cfg.model.name in (None, "dynunet"):
        top_filters = (cfg.model.options or {}).get("filters", [base])[0]
        top = top_filters * (cfg.train.batch_size or batch) * math.prod(patch)  # values per step
        planned.update({**network, "model.options.deep_supervision": cfg.segmentation.deep_supervision,
                        "model.options.recompute_top": top > RECOMPUTE_FROM})
    planned.update(plan_finetune(cfg, planned))  # model.pretrained: a gentler start
    return planned


def dynunet_options(patch: Sequence[int], spacing: Sequence[float], on_cpu: bool = True) -> dict[str, Any]:
    """DynUNet's planned strides, kernels and filters for a patch on a grid (dotted config keys):
    a network pretrained by ``medsight pretrain`` (``pretrain.method: restore``) gets the same
    layers as the segmentation net later fine-tuned from it, so its weights fit by name and shape."""
    strides, kernels = _strides_and_kernels(patch, spacing)
    base = 16 if on_cpu else 32  # a CPU: a third of the time per step, three times the steps
    return {"model.options.strides": strides, "model.options.kernel_size": kernels,
            "model.options.filters": [min(base * 2**i, 320) for i in range(len(strides))]}


def _iterations(fp: dict[str, Any], cfg: RunConfig, batch: int, patch: Sequence[int], base: int) -> int:
    """Steps per epoch: every case about once (nnU-Net caps it at 250), and with a time budget
    no more than leave MIN_EPOCHS epochs in it (a schedule needs epochs to decay over)."""
    steps = max(25, min(250, math.ceil(fp["n_cases"] / batch)))
    if cfg.train.epochs is None:
        minutes = float(cfg.train.time_budget_minutes or DEFAULT_MINUTES)
        step_seconds = batch * math.prod(patch) * base**2 / STEP_RATE
        steps = min(steps, int(minutes * 60 / MIN_EPOCHS / step_seconds))
    return max(10, steps)


def _coarsening(fp: dict[str, Any], cfg: RunConfig, dims: int, spacing: Sequence[float] | None) -> float:
    """The grid factor for 2D under a time budget (1: native); see MIN_PASSES."""
    if dims != 2 or cfg.transforms.spacing is not None or cfg.train.epochs is not None:
        return 1.0
    seconds = float(cfg.train.time_budget_minutes or DEFAULT_MINUTES) * 60
    scale = np.array(fp["spacing_median"], dtype=float) / np.array(spacing or fp["spacing_median"], dtype=float)
    shape = np.array(fp["shape_median"], dtype=float) * scale
    chosen = 1.0
    for factor in COARSEN_FACTORS:
        if factor > 1 and shape.min() / factor < MIN_SIDE_2D:
            break
        chosen = factor
        pass_seconds = fp["n_cases"] * math.prod(shape / factor) * 16**2 / STEP_RATE
        if seconds / pass_seconds >= MIN_PASSES:
            break
    return chosen


def _target_spacing(fp: dict[str, Any]) -> list[float] | None:
    """Median spacing when spacings differ between cases (None: all alike, keep the grid).

    On a markedly anisotropic axis the 10th percentile would be nnU-Net's choice; with the
    median spacing already coarse there, keeping the median avoids inventing slices."""
    lo, hi = np.array(fp["spacing_min"]), np.array(fp["spacing_max"])
    if np.all(hi <= lo * 1.01):
        return None
    return [round(float(s), 4) for s in fp["spacing_median"]]


def _normalisation(fp: dict[str, Any]) -> str:
    # CT: one window over the data set's foreground HU range (nnU-Net's CT normalisation);
    # anything else: per-image percentiles, robust to the odd extreme voxel
    return "window" if str(fp.get("modality") or "").upper() == "CT" else "percentile"


def _patch_size(median_shape: np.ndarray, spacing: Sequence[float], dims: int) -> list[int]:
    """The median case, shrunk along its longest physical axes to fit, in multiples of 2^pools."""
    shape = np.maximum(median_shape, MIN_FEATURE * 2)
    # the budget holds for the rounded patch: rounding up alone added up to ~25% per axis
    while math.prod(_round_up(shape)) > MAX_PATCH_VOXELS[dims]:
        physical = shape * np.array(spacing)
        axis = int(np.argmax(physical))
        shape[axis] = max(shape[axis] * 0.9, MIN_FEATURE * 2)
    return _round_up(shape)


def _round_up(shape: np.ndarray) -> list[int]:
    """Each size up to a multiple of 2^(the pools it allows)."""
    return [int(math.ceil(size / 2 ** _pools_for(size)) * 2 ** _pools_for(size)) for size in shape]


def _pools_for(size: float) -> int:
    return max(0, min(MAX_POOLS, int(math.floor(math.log2(max(size, 1) / MIN_FEATURE)))))


def _strides_and_kernels(patch: Sequence[int], spacing: Sequence[float]) -> tuple[list[list[int]], list[list[int]]]:
    """Per level: stride 2 on axes that can still halve and whose spacing is within 2x of the
    finest (nnU-Net's rule); kernel 1 on an axis still much coarser than the others."""
    size = np.array(patch, dtype=float)
    sp = np.array(spacing, dtype=float)
    strides, kernels = [[1] * len(patch)], []
    kernels.append([1 if s > ANISOTROPY * sp.min() else 3 for s in sp])
    for _ in range(MAX_POOLS):
        can = (size / 2 >= MIN_FEATURE) & (sp < 2 * sp.min())
        if not can.any():
            break
        stride = [2 if c else 1 for c in can]
        size = size / np.array(stride)
        sp = sp * np.array(stride)
        strides.append(stride)
        kernels.append([1 if s > ANISOTROPY * sp.min() else 3 for s in sp])
    return strides, kernels


def describe(planned: dict[str, Any]) -> str:
    """One line for the log."""
    keys = ("segmentation.patch_size", "train.batch_size", "transforms.spacing", "transforms.intensity")
    parts = [f"{k.split('.')[-1]} {planned[k]}" for k in keys if k in planned]
    if "model.options.strides" in planned:
        parts.append(f"depth {len(planned['model.options.strides']) - 1}")
    return ", ".join(parts)
