"""Fine-tuning: start the net from ``model.pretrained`` and choose which weights train.

``train.finetune``:
- ``full``: every weight (with ``train.layer_decay`` and ``train.head_epochs``, see optim.py);
- ``linear``: the head alone (a linear probe of the pretrained features);
- ``partial``: the last ``train.partial_stages`` stages and the head (``models/stages.py``);
- ``lora``: low-rank adapters on a transformer's attention, and the head (``models/lora.py``).

Frozen stages keep their weights; their BatchNorm statistics still follow the new data
(re-estimated before each validation, ``training/batchnorm.py``), which is what lets a net
pretrained on other images see these ones. The plan records what loaded and what trains.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from torch import nn

from medsight.models.lora import apply_lora
from medsight.models.pretrained import load_pretrained
from medsight.models.stages import stages
from medsight.training.trainer import Setup

log = logging.getLogger(__name__)


def prepare_finetune(setup: Setup) -> Setup:
    """``setup`` with its model started from ``model.pretrained`` and frozen or adapted as
    ``train.finetune`` says; the plan gains ``pretrained`` and ``finetune``."""
    cfg, model, plan = setup.cfg, setup.model, dict(setup.plan)
    if cfg.model.pretrained is not None:
        plan["pretrained"] = load_pretrained(model, cfg.model.pretrained).as_plan()  # it logs what loaded
    mode = cfg.train.finetune or "full"
    if mode == "lora":
        model = apply_lora(model, cfg.train.lora_rank, cfg.train.lora_alpha)
    else:
        freeze(model, mode, cfg.train.partial_stages)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    plan["finetune"] = {"mode": mode, "trainable_parameters": trainable, "parameters": total}
    if mode != "full":
        log.info("fine-tuning %s: %d of %d parameters train", mode, trainable, total)
    return replace(setup, model=model, plan=plan)


def freeze(model: nn.Module, mode: str, partial_stages: int = 2) -> list[str]:
    """Stop gradients to all but the stages ``mode`` trains; return the trained stages' names."""
    found = stages(model)
    keep = {"full": len(found), "linear": 1, "partial": partial_stages + 1}[mode]
    trained = found[-keep:]
    names = {n for _, group in trained for n in group}
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    return [stage for stage, _ in trained]
