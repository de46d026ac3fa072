"""How to run on this machine: threads, bf16 autocast and channels-last memory layout.

On a CPU with native bf16 (AVX512-BF16 or AMX) autocast roughly doubles convolution
throughput (``bench/train_speed.py``); elsewhere bf16 is emulated and slower, so
``precision: auto`` keeps fp32 there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool
    channels_last: bool
    threads: int

    @classmethod
    def create(cls, precision: str = "auto", channels_last: bool = True, threads: int | None = None,
               spatial_dims: int = 2) -> "Runtime":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            bf16 = precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported())
        else:
            bf16 = precision == "bf16" or (precision == "auto" and cpu_has_native_bf16())
        threads = threads or available_cores()
        if device.type == "cpu":
            torch.set_num_threads(threads)
            # Channels-last only pays with bf16 here, and fp32 backward passes through
            # channels-last oneDNN convolutions crash in torch 2.13 CPU (heap corruption on
            # narrow ResNets), so fp32 keeps the default layout.
            channels_last = channels_last and bf16
        return cls(device, bf16, channels_last, threads)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _memory_format(self, ndim: int):
        if not self.channels_last:
            return torch.contiguous_format
        return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim, torch.contiguous_format)

    def model(self, model: nn.Module, spatial_dims: int) -> nn.Module:
        return model.to(self.device, memory_format=self._memory_format(spatial_dims + 2))

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, memory_format=self._memory_format(x.ndim), non_blocking=True)
