"""Machinery every floor above uses: device and precision, checkpoints, the run folder, and
the forward passes (batched engines, sliding windows, detector boxes) that training's
validation and inference share.

Training, inference, the service and export all import from here, never from each other.
"""

from medsight.runtime.device import (
    PRECISION_ENV,
    Runtime,
    available_cores,
    cpu_description,
    cpu_has_native_bf16,
    cpu_kind,
    resolve_precision,
)

__all__ = ["PRECISION_ENV", "Runtime", "available_cores", "cpu_description", "cpu_has_native_bf16", "cpu_kind",
           "resolve_precision"]
