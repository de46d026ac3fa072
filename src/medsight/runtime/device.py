"""How to run on this machine: device, precision, threads and memory layout.

The one place that decides precision for the CPU kind. On a CPU with native bf16
(AVX512-BF16 or AMX) bf16 autocast roughly doubles convolution throughput; on AVX2-only
CPUs bf16 is emulated and hundreds of times slower, so ``auto`` means fp32 there.
``MEDSIGHT_PRECISION=fp32|bf16`` overrides ``auto`` for a whole process tree (the test
suite uses it to run the precision-sensitive tests both ways on one machine).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.runtime.mixed import keep_head_fp32

log = logging.getLogger(__name__)
PRECISION_ENV = "MEDSIGHT_PRECISION"
PRECISIONS = ("auto", "bf16", "fp32")
FP32_HEAD = True  # bench/bf16_accuracy.py switches it off to measure what it is worth


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True on CPUs whose oneDNN kernels run bf16 natively (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "unknown", frozenset()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def cpu_kind() -> str:
    """The CPU kind, as far as kernels differ: ``amx`` (Intel AMX: bf16 and int8 matrix units),
    ``avx512-bf16`` (e.g. AMD Zen 4), ``avx512``, ``avx2`` or what torch reports otherwise.
    Engine choices (int8 and bf16 rounding) hold for one kind only."""
    flags = _cpuinfo()[1]
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    return torch.backends.cpu.get_cpu_capability().lower()


def cpu_description() -> dict:
    """The CPU kind, for benchmark tables: model name, kind and native bf16."""
    return {"model": _cpuinfo()[0], "kind": cpu_kind(), "bf16_native": cpu_has_native_bf16()}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_precision(requested: str = "auto", device: torch.device | None = None) -> str:
    """``bf16`` or ``fp32`` for ``requested`` (auto|bf16|fp32) on ``device``."""
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}; choose {', '.join(PRECISIONS)}")
    if requested == "auto":
        forced = os.environ.get(PRECISION_ENV, "").strip().lower()
        if forced and forced != "auto":
            if forced not in PRECISIONS:
                raise ConfigError(f"{PRECISION_ENV}={forced!r}: choose fp32 or bf16")
            return forced
        device = device or default_device()
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return requested


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool
    channels_last: bool
    threads: int

    @classmethod
    def create(cls, precision: str = "auto", channels_last: bool = True, threads: int | None = None,
               spatial_dims: int = 2, device: torch.device | str | None = None) -> "Runtime":
        device = torch.device(device) if device is not None else default_device()
        bf16 = resolve_precision(precision, device) == "bf16"
        threads = threads or available_cores()
        if device.type == "cpu":
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            # Channels-last only pays with bf16 on CPU (bench/channels_last.py), and fp32
            # backward through channels-last oneDNN convolutions crashes in torch 2.13 CPU
            # (bench/onednn_fp32_channels_last_crash.py), so fp32 keeps the default layout.
            channels_last = channels_last and bf16
        return cls(device, bf16, channels_last, threads)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def memory_format(self, ndim: int):
        if not self.channels_last:
            return torch.contiguous_format
        return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim, torch.contiguous_format)

    def model(self, model: nn.Module, spatial_dims: int) -> nn.Module:
        """``model`` on this device and layout; under bf16 its last linear layer stays fp32
        (runtime/mixed.py says why)."""
        if self.bf16 and FP32_HEAD:
            keep_head_fp32(model)
        return model.to(self.device, memory_format=self.memory_format(spatial_dims + 2))

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, memory_format=self.memory_format(x.ndim), non_blocking=True)

    def describe(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last,
                "threads": self.threads, "device": str(self.device)}
