"""An encoder for self-supervised pretraining: a registered classifier without its class-score
layer, plus a projection MLP (SimCLR, Chen et al. 2020).

The encoder's layers are registered under the classifier's own module names, so a pretrain
checkpoint's keys are the classifier's (``layer1.0.conv1.weight`` ...) minus its head, plus
``projection.*``: loading it into a classifier of the same ``model.name`` matches by name and
shape, and only the head (and the projection, which the classifier lacks) stay apart.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medsight.models.heads import last_linear, strip_last_linear
from medsight.models.registry import build_model

PROJECTION = "projection"


def feature_layer(model: nn.Module) -> nn.Module:
    """The layer whose *input* is a model's penultimate feature: the projection head of an encoder,
    the class-score layer of a classifier (the same feature for the same ``model.name``)."""
    projection = getattr(model, PROJECTION, None)
    if isinstance(projection, nn.Module):
        return projection
    found = last_linear(model)
    if found is None:
        raise ValueError("the model has no linear class-score layer")
    return found[1]


class ContrastiveNet(nn.Module):
    """``projection(encoder(x))``; ``x`` is ``(N, C, *S)`` or views ``(N, V, C, *S)`` -> ``(N, V, D)``."""

    def __init__(self, encoder: nn.Module, projection: nn.Module, spatial_dims: int):
        super().__init__()
        if list(encoder.parameters(recurse=False)) or list(encoder.buffers(recurse=False)):
            raise ValueError("the encoder keeps tensors outside its layers")
        for name, child in encoder.named_children():  # the classifier's names, no prefix
            self.add_module(name, child)
        self.projection = projection
        self._encoder = (encoder,)  # a tuple: its layers are registered above, not twice
        self.spatial_dims = spatial_dims

    def train(self, mode: bool = True) -> "ContrastiveNet":
        self._encoder[0].training = mode
        return super().train(mode)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encoder[0](x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == self.spatial_dims + 3:
            n, v = x.shape[:2]
            return self.projection(self.encode(x.flatten(0, 1))).view(n, v, -1)
        return self.projection(self.encode(x))


def contrastive_model(name: str, in_channels: int, spatial_dims: int, projection_dim: int = 128,
                      input_size: tuple[int, ...] | None = None, **options: Any) -> ContrastiveNet:
    """The registry's ``name`` with its class-score layer replaced by identity, and a projection MLP
    (hidden width = feature width, as in SimCLR)."""
    model = build_model(name, in_channels, 2, spatial_dims, input_size=input_size, **options)
    features = strip_last_linear(model)
    projection = nn.Sequential(nn.Linear(features, features), nn.ReLU(inplace=True),
                               nn.Linear(features, projection_dim))
    return ContrastiveNet(model, projection, spatial_dims)
