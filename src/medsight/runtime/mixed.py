"""Which layers stay in fp32 when the rest of a model runs under bf16 autocast.

bf16 keeps 8 bits of mantissa. In the convolutions, which are nearly all of the compute, that
costs no accuracy; in the classifier's last layer it does: the class scores come out rounded to
1 part in 256, so a logit of 5 moves in steps of 0.03, near-equal cases tie, and the softmax
probabilities, the loss's gradient, the AUC and the calibration all see the rounding
(``bench/bf16_accuracy.py`` measures it). The last ``nn.Linear`` is a few thousand
multiply-adds per image, so running it in fp32 costs nothing measurable.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from medsight.models.heads import last_linear


def keep_head_fp32(model: nn.Module) -> nn.Module:
    """Run the model's last ``nn.Linear`` in fp32 even inside bf16 autocast; in place.

    The layer's class is swapped for a subclass whose ``forward`` leaves autocast, so the
    state dict, ``deepcopy`` and ONNX export see the same module and the same keys."""
    found = last_linear(model)
    if found is not None and not isinstance(found[1], _Fp32Forward):
        found[1].__class__ = _fp32_class(type(found[1]))
    return model


class _Fp32Forward:
    """Marker for a module whose forward runs outside autocast."""


@functools.lru_cache(maxsize=None)
def _fp32_class(cls: type[nn.Module]) -> type[nn.Module]:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return cls.forward(self, x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return cls.forward(self, x.float())

    return type(f"Fp32{cls.__name__}", (_Fp32Forward, cls), {"forward": forward, "__module__": __name__})
