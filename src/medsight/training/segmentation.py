"""The segmentation task the trainer runs: foreground-oversampled patches, Dice + CE, Dice on val.

Cases keep their own sizes (no stacked tensor): each batch draws patches from per-case
tensors, a share of them (``segmentation.foreground_oversample``, nnU-Net's 1/3) centred on
a voxel of a randomly chosen class present in the case, so small structures are seen often.
Patches are augmented as a batch, masks with them (``transforms/batch_augment.py``).
Validation segments every validation case whole, by sliding windows with Gaussian weights.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from medsight.config import RunConfig
from medsight.data.loading import load_items
from medsight.data.prepared import PreparedCases, prepare_cases
from medsight.data.registry import build_dataset
from medsight.errors import MedsightError
from medsight.models import build_model
from medsight.planning import apply_plan, open_keys
from medsight.planning.segmentation import describe, fingerprint, plan_segmentation
from medsight.runtime import Runtime
from medsight.runtime.sliding import sliding_probabilities
from medsight.training.classification import augmenter
from medsight.training.trainer import Setup
from medsight.transforms import preprocessing
from medsight.transforms.batch_augment import BatchAugment

log = logging.getLogger(__name__)
LOCATIONS_PER_CLASS = 10_000  # foreground voxels kept per case and class for patch centres


def setup_segmentation(cfg: RunConfig, runtime: Runtime) -> Setup:
    """Load the cases, fingerprint them, plan what the config leaves open, build model and task."""
    data = build_dataset(cfg.data, cfg.train.seed)
    loaded = {}
    for split in ("train", "val"):
        items, skipped = load_items(data.split(split), policy=cfg.data.bad_files,
                                    require_deidentified=cfg.data.require_deidentified)
        data.skipped.extend(skipped)
        if not items:
            raise MedsightError(f"the {split} split is empty")
        missing = [str(it.get("id")) for it in items if it.get("mask") is None]
        if missing:
            raise MedsightError(f"segmentation needs a mask for every case; none for {missing[0]}")
        loaded[split] = items
    class_names = segmentation_class_names(cfg, data.class_names, loaded["train"])
    fp = fingerprint(loaded["train"], class_names)
    planned = open_keys(cfg, {"train.monitor": "val_dice", **plan_segmentation(fp, cfg, runtime.device.type == "cpu")})
    cfg = apply_plan(cfg, planned)
    log.info("plan: %s", describe(planned))
    channels = cfg.transforms.channels or int(loaded["train"][0]["image"].shape[0])
    pre = preprocessing(cfg.transforms, cfg.model.spatial_dims, channels, mask_keys=["mask"])
    train, val = (prepare_cases(loaded[s], pre, cfg.model.spatial_dims) for s in ("train", "val"))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model.name, channels, len(class_names), cfg.model.spatial_dims,
                        input_size=tuple(cfg.segmentation.patch_size), **cfg.model.options)
    augment = augmenter(cfg)
    task = SegmentationTask(train, val, len(class_names), cfg, augment)
    plan = {"task": "segmentation", "class_names": class_names, "in_channels": channels,
            "spatial_dims": cfg.model.spatial_dims, "input_shape": list(cfg.segmentation.patch_size),
            "n_items": {"train": len(train), "val": len(val)}, "fingerprint": fp, "planned": planned,
            "skipped_files": [{"file": f, "problem": p} for f, p in data.skipped]}
    return Setup(cfg, model, task, plan)


def segmentation_class_names(cfg: RunConfig, names: list[str], items: list[dict]) -> list[str]:
    """Background first: the data set's label names (MSD), else 0..K from the masks."""
    if cfg.data.dataset == "synthetic":
        return ["background", "nodule"]
    if cfg.data.dataset == "msd" and names:
        return names
    top = max(int(torch.as_tensor(it["mask"]).max()) for it in items)
    return ["background"] + [str(k) for k in range(1, max(top, 1) + 1)]


class SegmentationTask:
    """Patches in, Dice + cross-entropy out; mean foreground Dice on whole validation cases."""

    def __init__(self, train: PreparedCases, val: PreparedCases, num_classes: int, cfg: RunConfig,
                 augment: BatchAugment | None = None):
        self.train, self.val, self.num_classes = train, val, num_classes
        s = cfg.segmentation
        self.patch = tuple(int(p) for p in s.patch_size)
        self.batch_size, self.oversample = int(cfg.train.batch_size), s.foreground_oversample
        self.iterations = int(s.iterations_per_epoch)
        self.augment, self.sw_overlap = augment, min(s.sw_overlap, 0.25)  # validation: fewer windows
        # batch Dice over foreground classes (nnU-Net): slices without the structure do not
        # push every output towards background, which per-sample Dice does on small lesions
        self.criterion = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        self.images = [_pad_to(x, self.patch) for x in train.images]
        self.masks = [_pad_to(m[None], self.patch)[0] for m in train.masks]
        self.locations = [_class_locations(m, num_classes) for m in self.masks]

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        forced_from = round(self.batch_size * (1 - self.oversample))
        for _ in range(self.iterations):
            xs, ms = [], []
            for b in range(self.batch_size):
                case = int(rng.integers(len(self.images)))
                start = self._start(case, b >= forced_from, rng)
                region = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
                xs.append(self.images[case][(slice(None), *region)])
                ms.append(self.masks[case][region])
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
                case = int(rng.integers(len(self.images)))
                start = self._start(case, b % 2 == 1, rng)
                xs.append(self.images[case][(slice(None), *(slice(s, s + p) for s, p in zip(start, self.patch)))])
            n += size
            yield torch.stack(xs)

    def _start(self, case: int, foreground: bool, rng: np.random.Generator) -> list[int]:
        shape = self.masks[case].shape
        high = [s - p for s, p in zip(shape, self.patch)]
        present = [k for k, loc in self.locations[case].items() if len(loc)]
        if foreground and present:
            loc = self.locations[case][present[int(rng.integers(len(present)))]]
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
        """Dice per class pooled over the validation cases (true and false positives summed
        first, nnU-Net's "pseudo Dice"): slices or cases without the class do not count as 1."""
        model.eval()
        tp, fp, fn = (torch.zeros(self.num_classes - 1) for _ in range(3))
        for x, m in zip(self.val.images, self.val.masks):
            probs = sliding_probabilities(model, x, self.patch, runtime, self.batch_size, self.sw_overlap)
            pred, ref = probs.argmax(0), m.long()
            for k in range(1, self.num_classes):
                p, r = pred == k, ref == k
                tp[k - 1] += (p & r).sum()
                fp[k - 1] += (p & ~r).sum()
                fn[k - 1] += (~p & r).sum()
        dice = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
        row = {"val_dice": float(dice.mean())}
        row.update({f"val_dice_{k}": float(d) for k, d in enumerate(dice.tolist(), start=1)})
        return row


def _pad_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the spatial axes of ``(C, *S)`` up to at least ``size`` (centred)."""
    pads = []
    for s, p in zip(reversed(x.shape[1:]), reversed(size)):
        extra = max(p - s, 0)
        pads += [extra // 2, extra - extra // 2]
    return F.pad(x, pads) if any(pads) else x


def _class_locations(mask: torch.Tensor, num_classes: int) -> dict[int, np.ndarray]:
    """Up to LOCATIONS_PER_CLASS voxel coordinates per foreground class (a fixed subsample)."""
    rng = np.random.default_rng(0)
    out = {}
    flat = mask.reshape(-1).numpy()
    for k in range(1, num_classes):
        idx = np.flatnonzero(flat == k)
        if len(idx) > LOCATIONS_PER_CLASS:
            idx = rng.choice(idx, LOCATIONS_PER_CLASS, replace=False)
        out[k] = np.stack(np.unravel_index(idx, mask.shape), axis=1) if len(idx) else np.zeros((0, mask.ndim), int)
    return out
