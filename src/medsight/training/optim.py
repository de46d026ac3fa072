"""Optimiser and learning-rate schedule (linear warm-up, then cosine or step decay).

Fine-tuning (``training/finetune.py``) adds two things here, both by parameter group: with
``train.layer_decay`` below 1 each stage of the net (``models/stages.py``) is its own group,
its rate scaled by ``layer_decay ** (stages above it)``; with ``train.head_epochs`` (or
``train.head_fraction`` of the epochs) the groups below the head have a rate of 0 for those first
epochs (the head trains alone; gradients still flow, so DistributedDataParallel sees every
parameter used).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.models.stages import stages


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    from medsight.planning.apply import train_defaults

    cfg = train_defaults(cfg)
    groups = param_groups(model, cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.momentum > 0)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The trainable parameters as optimiser groups: one group, or one per stage (layer decay or
    head-first); each group carries ``head`` (the last stage) for the schedule."""
    decay, head_first = float(cfg.layer_decay or 1.0), bool(cfg.head_epochs or cfg.head_fraction)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if decay == 1.0 and not head_first:
        return [{"params": list(named.values()), "head": True}]
    found = stages(model)
    groups = []
    for depth, (name, names) in enumerate(found):
        params = [named.pop(n) for n in names if n in named]
        if params:
            groups.append({"params": params, "lr": cfg.lr * decay ** (len(found) - 1 - depth),
                           "stage": name, "head": depth == len(found) - 1})
    if named:  # anything the stages missed trains with the first group's rate
        groups.insert(0, {"params": list(named.values()), "lr": groups[0]["lr"] if groups else cfg.lr,
                          "stage": "other", "head": False})
    return groups


def lr_factor(epoch: int, cfg: TrainConfig, epochs: int | None = None, head: bool = True) -> float:
    """Multiplier of the base learning rate for a 0-based epoch of ``epochs`` (default: the
    config's); 0 for a group below the head during the head-alone epochs (``head_epochs``)."""
    from medsight.planning.apply import train_defaults

    cfg = train_defaults(cfg)
    epochs = cfg.epochs if epochs is None else epochs
    if not head and epoch < head_epochs(cfg, epochs):
        return 0.0
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(1, epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    if cfg.schedule == "step":
        return cfg.gamma ** ((epoch - cfg.warmup_epochs) // cfg.step_size)
    return 1.0


def head_epochs(cfg: TrainConfig, epochs: int) -> int:
    """The first epochs in which the head trains alone: ``head_epochs``, or ``head_fraction`` of ``epochs``."""
    return max(int(cfg.head_epochs or 0), math.ceil(float(cfg.head_fraction or 0.0) * epochs))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   epochs: Callable[[], int] | None = None):
    """LambdaLR over ``lr_factor`` per group; ``epochs`` gives the current planned length (time budgets)."""
    def factor(head: bool):
        released = head  # once the body trains it keeps training, however the epochs are refitted

        def rate(e: int) -> float:
            nonlocal released
            value = lr_factor(e, cfg, epochs() if epochs else None, released)
            released = released or value > 0
            return value
        return rate

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g.get("head", True)) for g in optimizer.param_groups])
