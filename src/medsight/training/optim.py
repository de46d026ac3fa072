"""Optimiser and learning-rate schedule (linear warm-up, then cosine or step decay)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from medsight.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    from medsight.planning.apply import train_defaults

    cfg = train_defaults(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.momentum > 0)


def lr_factor(epoch: int, cfg: TrainConfig, epochs: int | None = None) -> float:
    """Multiplier of the base learning rate for a 0-based epoch of ``epochs`` (default: the config's)."""
    from medsight.planning.apply import train_defaults

    cfg = train_defaults(cfg)
    epochs = cfg.epochs if epochs is None else epochs
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(1, epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    if cfg.schedule == "step":
        return cfg.gamma ** ((epoch - cfg.warmup_epochs) // cfg.step_size)
    return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   epochs: Callable[[], int] | None = None):
    """LambdaLR over ``lr_factor``; ``epochs`` gives the current planned length (time budgets)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, cfg, epochs() if epochs else None))
