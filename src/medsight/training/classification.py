"""The classification task the trainer runs: batches, loss and validation metrics."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import RunConfig
from medsight.data.loading import LazyItems
from medsight.data.prepared import (
    PreparedSplit,
    load_splits,
    prepare_cached,
    prepare_loaded,
    sample_fingerprint,
    uses_cache,
)
from medsight.data.registry import build_dataset
from medsight.data.types import SplitData
from medsight.errors import ConfigError
from medsight.metrics.classification import auc_score, auc_standard_error
from medsight.models import build_model
from medsight.planning import apply_plan, open_keys
from medsight.planning.classification import fingerprint, fingerprint_sample, plan_classification
from medsight.runtime import Runtime
from medsight.runtime.engine import TorchEngine, run_batches
from medsight.training.trainer import Setup
from medsight.transforms.batch_augment import BatchAugment
from medsight.utils.prefetch import prefetch

log = logging.getLogger(__name__)


def setup_classification(cfg: RunConfig, runtime: Runtime, minutes: float | None = None) -> Setup:
    """Load the data, plan what the config leaves open, preprocess once, build model and task."""
    data = build_dataset(cfg.data, cfg.train.seed)
    if not data.class_names:  # e.g. a manifest with masks and no labels
        raise ConfigError(f"{cfg.data.path or cfg.data.dataset}: no class labels to classify; "
                          "for masks set task: segmentation")
    fp, loaded = data_fingerprint(cfg, data)
    planned = open_keys(cfg, plan_classification(fp, cfg, minutes))
    cfg = apply_plan(cfg, planned)
    log.info("plan: %s", describe(planned))
    prepared, channels = prepare_splits(cfg, data, loaded, fp)
    train, val = prepared["train"], prepared["val"]
    torch.manual_seed(cfg.train.seed)  # the same initial weights for the same seed
    model = build_model(cfg.model.name, channels, data.num_classes, cfg.model.spatial_dims,
                        input_size=tuple(train.images.shape[2:]), **cfg.model.options)
    weights = balanced_class_weights(train.labels, data.num_classes) if cfg.train.class_weights == "balanced" else None
    task = ClassificationTask(train, val, data.num_classes, cfg.train.batch_size, augmenter(cfg), weights,
                              cfg.train.label_smoothing)
    plan = {**make_plan(cfg, data, prepared, channels), "fingerprint": fp, "planned": planned}
    return Setup(cfg, model, task, plan)


def data_fingerprint(cfg: RunConfig, data: SplitData) -> tuple[dict, dict | None]:
    """The planner's fingerprint of the training split, and the loaded splits of an in-memory set
    (None for files: a streamed sample for the plan, then the on-disk cache)."""
    if uses_cache(data):
        items = data.split("train")
        sample, labels = [items[i] for i in fingerprint_sample(len(items))], [int(it["label"]) for it in items]
        fp = sample_fingerprint(cfg, "classification", sample, [labels, data.class_names],
                                lambda: fingerprint(LazyItems(sample, cfg.data), data.class_names, labels))
        return fp, None
    loaded = load_splits(data, cfg, ("train", "val"))
    return fingerprint(loaded["train"], data.class_names), loaded


def prepare_splits(cfg: RunConfig, data: SplitData, loaded: dict | None, fp: dict
                   ) -> tuple[dict[str, PreparedSplit], int]:
    """Train and val preprocessed once with the planned config (through the cache for files)."""
    if loaded is None:
        return prepare_cached(data, cfg, ("train", "val"), cfg.transforms.channels or fp["channels"])
    return prepare_loaded(loaded, cfg)


def augmenter(cfg: RunConfig) -> BatchAugment | None:
    augment = cfg.transforms.augment
    return BatchAugment(augment, cfg.model.spatial_dims) if augment is not None and augment.enabled else None


def describe(planned: dict) -> str:
    keys = ("model.name", "model.options.width", "transforms.spatial_size", "transforms.resize", "transforms.intensity",
            "train.batch_size", "train.time_budget_minutes", "train.class_weights")
    return ", ".join(f"{k.split('.')[-1]} {planned[k]}" for k in keys if k in planned) or "nothing left to plan"


def make_plan(cfg: RunConfig, data: SplitData, prepared: dict[str, PreparedSplit], channels: int) -> dict:
    """nnU-Net-style fingerprint of what the run derived from the data, saved as JSON."""
    train = prepared["train"]
    counts = Counter(train.labels.tolist())
    return {
        "task": "classification",
        "class_names": data.class_names,
        "in_channels": channels,
        **({"image_columns": data.image_columns} if data.image_columns else {}),  # manifest: channel order
        "spatial_dims": cfg.model.spatial_dims,
        "input_shape": list(train.images.shape[2:]),
        "source_spacing_median": np.median(train.source_spacings, axis=0).round(4).tolist(),
        "n_items": {s: len(p) for s, p in prepared.items()},
        "train_class_counts": {data.class_names[k]: counts.get(k, 0) for k in range(data.num_classes)},
        "skipped_files": [{"file": f, "problem": p} for f, p in data.skipped],
        "intensity_after_preprocessing": dict(zip(("mean", "std"), _image_stats(train.images))),
    }


def _image_stats(images) -> tuple[float, float]:
    if isinstance(images, torch.Tensor):
        return float(images.mean()), float(images.std())
    return images.sample_stats()  # cached: a sample, not every image in memory


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``N / (K * n_c)``: each class contributes equally to the loss."""
    counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)


class ClassificationTask:
    """Cross-entropy classification over prepared tensors, with batched augmentation."""

    def __init__(self, train: PreparedSplit, val: PreparedSplit, num_classes: int,
                 batch_size: int, augment: BatchAugment | None = None,
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0):
        self.train, self.val = train, val
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.augment = augment
        self.class_weights = class_weights
        self.label_smoothing = label_smoothing

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, augmented batches; identical for the same ``seed``. Images streamed from
        the cache are read ahead in a thread while the model trains."""
        n = len(self.train)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=generator)
        batches = [order[s:s + self.batch_size] for s in range(0, n, self.batch_size)]
        batches = [idx for idx in batches if len(idx) >= 2 or n == 1]  # BatchNorm cannot train on one
        images = self.train.images
        streamed = getattr(images, "in_memory", True) is False
        reads = prefetch(batches, images.__getitem__) if streamed else (images[idx] for idx in batches)
        for idx, x in zip(batches, reads):
            if self.augment is not None:
                x, _ = self.augment(x, generator)
            yield x, self.train.labels[idx]

    def norm_batches(self, seed: int, max_images: int) -> Iterator[torch.Tensor]:
        """Un-augmented training images (a seeded subset) for BatchNorm re-estimation."""
        n = len(self.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[:max_images]
        step = max(self.batch_size, 128)  # larger batches: faster, and closer to population statistics
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            if len(idx) >= 2:
                yield self.train.images[idx]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, weight=self.class_weights,
                               label_smoothing=self.label_smoothing)

    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        logits = run_batches(TorchEngine(model, runtime), self.val.images)
        labels = self.val.labels
        probs = torch.softmax(logits, 1).numpy()
        correct = probs.argmax(1) == labels.numpy()
        per_case = F.cross_entropy(logits, labels, reduction="none").numpy()
        # standard errors: how far apart two epochs must be to differ (early_stopping.within_se)
        return {
            "val_loss": float(F.cross_entropy(logits, labels, weight=self.class_weights)),
            "val_loss_se": float(per_case.std(ddof=1) / np.sqrt(len(per_case))) if len(per_case) > 1 else 0.0,
            "val_accuracy": float(correct.mean()),
            "val_accuracy_se": float(np.sqrt(correct.mean() * (1 - correct.mean()) / len(correct))),
            "val_auc": auc_score(labels.numpy(), probs),
            "val_auc_se": auc_standard_error(labels.numpy(), probs),
        }
