"""Batched forward passes without gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medsight.runtime import Runtime


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, runtime: Runtime,
                   batch_size: int = 256) -> torch.Tensor:
    """Logits ``(N, K)`` in fp32 for images ``(N, C, *spatial)``; the model is put in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = runtime.batch(images[start:start + batch_size])
        with runtime.autocast():
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def predict_probabilities(model: nn.Module, images: torch.Tensor, runtime: Runtime,
                          batch_size: int = 256) -> np.ndarray:
    return torch.softmax(predict_logits(model, images, runtime, batch_size), dim=1).numpy()
