"""The segmentation task the trainer runs: foreground-oversampled patches, Dice + CE, Dice on val.

Cases keep their own sizes (no stacked tensor): each batch draws patches from per-case
tensors, a share of them (``segmentation.foreground_oversample``, nnU-Net's 1/3) centred on
a voxel of a randomly chosen class present in the case, so small structures are seen often.
Patches are augmented as a batch, masks with them (``transforms/batch_augment.py``).
Validation segments whole cases by sliding windows with Gaussian weights when that is cheap,
else a fixed set of validation patches (see ``SegmentationTask``).
"""

from __future__ import annotations

import logging
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from medsight.config import RunConfig
from medsight.data.cache import CachedCases
from medsight.data.loading import LazyItems
from medsight.data.prepared import (
    PreparedCases,
    load_splits,
    prepare_cached_cases,
    prepare_cases,
    sample_fingerprint,
    uses_cache,
)
from medsight.data.registry import build_dataset
from medsight.errors import MedsightError
from medsight.models import build_model
from medsight.planning import apply_plan, open_keys
from medsight.planning.classification import fingerprint_sample
from medsight.planning.segmentation import case_summary, combine_summaries, describe, fingerprint, plan_segmentation
from medsight.runtime import Runtime
from medsight.runtime.device import available_cores
from medsight.runtime.sliding import sliding_probabilities
from medsight.training.classification import augmenter
from medsight.training.trainer import Setup
from medsight.transforms import preprocessing
from medsight.transforms.batch_augment import BatchAugment

log = logging.getLogger(__name__)
FINGERPRINT_VOXELS = 2.5e9  # the planner's sample stops here (32 volumes of 512x512x300)
FINGERPRINT_PARALLEL_FROM = 8  # fewer cases: read in this process (worker start-up costs more)
VAL_SHARE = 0.4  # validation may cost this share of an epoch's training voxels
VAL_SEED = 12345


def setup_segmentation(cfg: RunConfig, runtime: Runtime) -> Setup:
    """Fingerprint the cases, plan what the config leaves open, preprocess, build model and task.

    Cases from files are fingerprinted on a fixed sample, read one at a time, and preprocessed
    into the on-disk cache (``data/cache.py``); in-memory sets stay in memory."""
    data = build_dataset(cfg.data, cfg.train.seed)
    for split in ("train", "val"):
        if not data.split(split):
            raise MedsightError(f"the {split} split is empty")
        missing = [str(it.get("id")) for it in data.split(split) if it.get("mask") is None]
        if missing:
            raise MedsightError(f"segmentation needs a mask for every case; none for {missing[0]}")
    cached = uses_cache(data)
    if cached:
        items = data.split("train")
        sample = [items[i] for i in fingerprint_sample(len(items))]
        # MSD names its labels; else 0..K from the masks, K known once every case is cached
        class_names = segmentation_class_names(cfg, data.class_names, []) if cfg.data.dataset == "msd" \
            else ["background", "1"]
        fp = sample_fingerprint(cfg, "segmentation", sample, [len(items), class_names],
                                lambda: file_fingerprint(sample, cfg, class_names, len(items)))
    else:
        loaded = load_splits(data, cfg, ("train", "val"))
        class_names = segmentation_class_names(cfg, data.class_names, loaded["train"])
        fp = fingerprint(loaded["train"], class_names)
    planned = open_keys(cfg, {"train.monitor": "val_dice", **plan_segmentation(fp, cfg, runtime.device.type == "cpu")})
    cfg = apply_plan(cfg, planned)
    log.info("plan: %s", describe(planned))
    channels = cfg.transforms.channels or int(fp["channels"])
    pre = preprocessing(cfg.transforms, cfg.model.spatial_dims, channels, mask_keys=["mask"])
    if cached:
        splits = {}
        for split in ("train", "val"):
            splits[split], skipped = prepare_cached_cases(data.split(split), cfg, pre, cfg.model.spatial_dims,
                                                          channels, f"preprocessing {split}")
            data.skipped.extend(skipped)
        train, val = splits["train"], splits["val"]
        top = max(int(m["mask_max"]) for m in train.metas)  # a label the sample did not show
        if cfg.data.dataset != "msd" and top >= len(class_names):
            class_names = ["background"] + [str(k) for k in range(1, top + 1)]
    else:
        train, val = (prepare_cases(loaded[s], pre, cfg.model.spatial_dims) for s in ("train", "val"))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model.name, channels, len(class_names), cfg.model.spatial_dims,
                        input_size=tuple(cfg.segmentation.patch_size), **cfg.model.options)
    augment = augmenter(cfg)
    task = SegmentationTask(train, val, len(class_names), cfg, augment)
    plan = {"task": "segmentation", "class_names": class_names, "in_channels": channels,
            "spatial_dims": cfg.model.spatial_dims, "input_shape": list(cfg.segmentation.patch_size),
            "n_items": {"train": len(train), "val": len(val)}, "fingerprint": fp, "planned": planned,
            "validation": "whole cases" if task.whole_case_validation else f"{task.val_patches} fixed patches",
            "skipped_files": [{"file": f, "problem": p} for f, p in data.skipped]}
    return Setup(cfg, model, task, plan)


def file_fingerprint(sample: list[dict], cfg: RunConfig, class_names: list[str], n_cases: int) -> dict:
    """The fingerprint of the training cases in ``sample``, read in worker processes (in a
    fixed random order), up to FINGERPRINT_VOXELS: 32 CT volumes of 512x512x300 are read,
    not ~5 minutes' worth of them, while every case of a 2D or small-volume set still is."""
    from tqdm.std import tqdm

    order = np.random.default_rng(0).permutation(len(sample))
    lazy = LazyItems([sample[i] for i in order], cfg.data)
    workers = min(available_cores(), 4) if len(sample) >= FINGERPRINT_PARALLEL_FROM else 0
    summaries, voxels = [], 0
    with tqdm(lazy.map(case_summary, workers), total=len(sample), desc="fingerprint", unit="case",
              disable=len(sample) < 20) as bar:
        for summary in bar:
            summaries.append(summary)
            voxels += math.prod(summary["shape"])
            if voxels >= FINGERPRINT_VOXELS:
                break
    return combine_summaries(summaries, class_names, n_cases)


def segmentation_class_names(cfg: RunConfig, names: list[str], items: list[dict]) -> list[str]:
    """Background first: the data set's label names (MSD), else 0..K from the masks."""
    if cfg.data.dataset == "synthetic":
        return ["background", "nodule"]
    if cfg.data.dataset == "msd" and names:
        return names
    top = max((int(torch.as_tensor(it["mask"]).max()) for it in items), default=1)
    return ["background"] + [str(k) for k in range(1, max(top, 1) + 1)]


class SegmentationTask:
    """Patches in, Dice + cross-entropy out; pooled foreground Dice on validation.

    ``train`` and ``val`` are ``PreparedCases`` (in memory) or ``CachedCases`` (memory-mapped
    from the cache): patches are read per batch. Validation segments whole cases when that
    costs at most ``VAL_SHARE`` of an epoch's training voxels, else a fixed set of validation
    patches (nnU-Net's choice): every epoch then costs the same, whatever the cases' size."""

    def __init__(self, train: PreparedCases | CachedCases, val: PreparedCases | CachedCases, num_classes: int,
                 cfg: RunConfig, augment: BatchAugment | None = None):
        self.train, self.val, self.num_classes = train, val, num_classes
        s = cfg.segmentation
        self.patch = tuple(int(p) for p in s.patch_size)
        self.batch_size, self.oversample = int(cfg.train.batch_size), s.foreground_oversample
        self.iterations = int(s.iterations_per_epoch)
        self.augment, self.sw_overlap = augment, min(s.sw_overlap, 0.25)  # validation: fewer windows
        # batch Dice over foreground classes (nnU-Net): slices without the structure do not
        # push every output towards background, which per-sample Dice does on small lesions
        self.criterion = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        epoch_voxels = self.iterations * self.batch_size * math.prod(self.patch)
        val_voxels = sum(math.prod(val.shape(i)) for i in range(len(val)))
        self.whole_case_validation = val_voxels <= VAL_SHARE * epoch_voxels
        self.val_patches = max(self.batch_size, min(len(val) * 4, round(VAL_SHARE * self.iterations)
                                                    * self.batch_size))

    def _patch(self, cases, case: int, start: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = cases.read(case, tuple(slice(s, s + p) for s, p in zip(start, self.patch)))
        return _pad_to(image, self.patch), _pad_to(mask[None], self.patch)[0]

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        forced_from = round(self.batch_size * (1 - self.oversample))
        for _ in range(self.iterations):
            xs, ms = [], []
            for b in range(self.batch_size):
                case = int(rng.integers(len(self.train)))
                x, m = self._patch(self.train, case, self._start(self.train, case, b >= forced_from, rng))
                xs.append(x)
                ms.append(m)
            x, m = torch.stack(xs), torch.stack(ms)[:, None]
            if self.augment is not None:
                x, m = self.augment(x, generator, m)
            yield x, m.long()

    def norm_batches(self, seed: int, max_images: int) -> Iterator[torch.Tensor]:
        """Un-augmented training patches (half on a label) for BatchNorm re-estimation."""
        rng = np.random.default_rng(seed + 1)
        n = 0
        while n < max_images:
            size = min(self.batch_size, max_images - n)
            if size < 2:
                break
            xs = []
            for b in range(size):
                case = int(rng.integers(len(self.train)))
                xs.append(self._patch(self.train, case, self._start(self.train, case, b % 2 == 1, rng))[0])
            n += size
            yield torch.stack(xs)

    def _start(self, cases, case: int, foreground: bool, rng: np.random.Generator) -> list[int]:
        high = [max(s - p, 0) for s, p in zip(cases.shape(case), self.patch)]
        locations = cases.locations(case) if foreground else {}
        present = [k for k, loc in locations.items() if len(loc)]
        if foreground and present:
            loc = locations[present[int(rng.integers(len(present)))]]
            centre = loc[int(rng.integers(len(loc)))]
            return [int(np.clip(c - p // 2, 0, h)) for c, p, h in zip(centre, self.patch, high)]
        return [int(rng.integers(h + 1)) for h in high]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()
        if outputs.ndim == targets.ndim + 1:  # deep supervision: heads stacked on dim 1
            weights = torch.tensor([0.5**i for i in range(outputs.shape[1])])
            weights = weights / weights.sum()
            return sum(w * self.criterion(outputs[:, i], targets) for i, w in enumerate(weights))
        return self.criterion(outputs, targets)

    @torch.no_grad()
    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        """Dice per class pooled over the validation cases or patches (true and false positives
        summed first, nnU-Net's "pseudo Dice"): cases without the class do not count as 1."""
        model.eval()
        tp, fp, fn = (torch.zeros(self.num_classes - 1) for _ in range(3))
        for pred, ref in self._val_predictions(model, runtime):
            for k in range(1, self.num_classes):
                p, r = pred == k, ref == k
                tp[k - 1] += (p & r).sum()
                fp[k - 1] += (p & ~r).sum()
                fn[k - 1] += (~p & r).sum()
        dice = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
        row = {"val_dice": float(dice.mean())}
        row.update({f"val_dice_{k}": float(d) for k, d in enumerate(dice.tolist(), start=1)})
        return row

    def _val_predictions(self, model: nn.Module, runtime: Runtime) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.whole_case_validation:
            for i in range(len(self.val)):
                x, m = self.val.read(i)
                probs = sliding_probabilities(model, x, self.patch, runtime, self.batch_size, self.sw_overlap)
                yield probs.argmax(0), m.long()
            return
        rng = np.random.default_rng(VAL_SEED)  # the same patches every epoch: comparable epochs
        picks = [(i % len(self.val), i % 2 == 0) for i in range(self.val_patches)]
        for start in range(0, len(picks), self.batch_size):
            xs, ms = zip(*(self._patch(self.val, c, self._start(self.val, c, fg, rng))
                           for c, fg in picks[start:start + self.batch_size]))
            with torch.inference_mode(), runtime.autocast():
                out = model(runtime.batch(torch.stack(xs)))
            out = torch.as_tensor(out[0] if isinstance(out, (list, tuple)) else out).float()
            if out.ndim == len(self.patch) + 3:  # deep supervision heads stacked on dim 1
                out = out[:, 0]
            yield out.argmax(1).cpu(), torch.stack(ms).long()


def _pad_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the spatial axes of ``(C, *S)`` up to at least ``size`` (centred)."""
    pads = []
    for s, p in zip(reversed(x.shape[1:]), reversed(size)):
        extra = max(p - s, 0)
        pads += [extra // 2, extra - extra // 2]
    return F.pad(x, pads) if any(pads) else x
