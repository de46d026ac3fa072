"""The classification task the trainer runs: batches, loss and validation metrics."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from medsight.data.prepared import PreparedSplit
from medsight.inference.engine import TorchEngine, run_batches
from medsight.runtime import Runtime
from medsight.transforms.batch_augment import BatchAugment


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
        """Shuffled, augmented batches; identical for the same ``seed``."""
        n = len(self.train)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if len(idx) < 2 and n > 1:  # BatchNorm cannot train on a batch of one
                continue
            x = self.train.images[idx]
            if self.augment is not None:
                x, _ = self.augment(x, generator)
            yield x, self.train.labels[idx]

    def norm_batches(self, seed: int, max_images: int) -> Iterator[torch.Tensor]:
        """Un-augmented training images (a seeded subset) for BatchNorm re-estimation."""
        n = len(self.train)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[:max_images]
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if len(idx) >= 2:
                yield self.train.images[idx]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, weight=self.class_weights,
                               label_smoothing=self.label_smoothing)

    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        logits = run_batches(TorchEngine(model, runtime), self.val.images)
        labels = self.val.labels
        probs = torch.softmax(logits, 1).numpy()
        return {
            "val_loss": float(F.cross_entropy(logits, labels, weight=self.class_weights)),
            "val_accuracy": float((probs.argmax(1) == labels.numpy()).mean()),
            "val_auc": _auc(labels.numpy(), probs),
        }


def _auc(y: np.ndarray, probs: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    try:
        return float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                                   labels=list(range(probs.shape[1]))))
    except ValueError:  # a class missing from this split
        return float("nan")
