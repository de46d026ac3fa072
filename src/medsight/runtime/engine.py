"""Engines run a model's forward pass in batches: the PyTorch one here, the ONNX one in
``medsight.inference.engine``; training's validation, predict, evaluate and the service share them.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from medsight.runtime.device import Runtime

# Images per forward pass. Larger batches fall out of cache: the fp32 PyTorch forward of
# ResNet-18-small on 28x28 images ran 0.79-0.86x as fast at 256 as at 64, on AVX2 and
# AVX-512 alike (ONNX Runtime is flat between them); bench/throughput.py.
BATCH_SIZE = 64


class Engine(Protocol):
    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """fp32 logits ``(N, K, ...)`` for a batch ``(N, C, *spatial)``."""
        ...


class TorchEngine:
    """The PyTorch model at the runtime's precision and memory layout, without autograd."""

    def __init__(self, model: nn.Module, runtime: Runtime):
        self.model, self.runtime = model.eval(), runtime
        self.name = f"pytorch-{runtime.precision}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.runtime.autocast():
            return self.model(self.runtime.batch(images)).float().cpu()


@torch.no_grad()
def run_batches(engine: Engine, images: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Logits for ``images`` ``(N, C, *spatial)`` in batches."""
    out = [engine(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0)
