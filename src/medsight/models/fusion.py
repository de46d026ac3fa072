"""Late fusion: any registered image classifier plus an MLP over clinical table columns.

The backbone's final linear layer is replaced by the identity, so it yields its pooled image
features; the table (see ``medsight.transforms.clinical``) goes through a small MLP, and a
classifier MLP reads the two concatenated. The hidden layer matters: a label that depends
on an interaction (a lesion *and* an age) is not a sum of an image term and a table term.

The model takes a ``FusionBatch`` (``medsight.transforms.fusion_batch``: images and table
travel together through the trainer, the inference engine and Grad-CAM, which only call
``.to``, index and ``len``), or ``model(images, table)``. Grad-CAM explains the image branch at ``backbone.<cam layer>``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models.heads import strip_last_linear
from medsight.models.registry import build_model, model_spec
from medsight.transforms.fusion_batch import FusionBatch

TABLE_EMBEDDING = 32
FUSION_HIDDEN = 64


class FusionClassifier(nn.Module):
    """``head(concat(backbone(images), table_mlp(table)))``; see the module docstring."""

    def __init__(self, backbone: nn.Module, table_features: int, num_classes: int, cam_layer: str = "",
                 embedding: int = TABLE_EMBEDDING, hidden: int = FUSION_HIDDEN, dropout: float = 0.1):
        super().__init__()
        if table_features < 1:
            raise ConfigError("a fusion model needs at least one clinical feature")
        image_features = strip_last_linear(backbone)
        self.backbone = backbone
        self.table = nn.Sequential(nn.Linear(table_features, embedding), nn.ReLU(inplace=True),
                                   nn.Linear(embedding, embedding), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(image_features + embedding, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.cam_layer = f"backbone.{cam_layer}" if cam_layer else ""
        self.image_features, self.table_features = image_features, table_features

    def forward(self, x: FusionBatch | torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(x, FusionBatch):
            x, table = x.images, x.table
        if table is None:
            raise ValueError("a fusion model needs the clinical table with the images")
        return self.head(torch.cat([self.backbone(x), self.table(table)], 1))


def fusion_model(name: str, in_channels: int, num_classes: int, spatial_dims: int, table_features: int,
                 input_size: tuple[int, ...] | None = None, **options: Any) -> FusionClassifier:
    """The registered classifier ``name`` fused with ``table_features`` clinical features."""
    spec = model_spec(name)
    if spec.task != "classification":
        raise ConfigError(f"model {name!r} is not a classifier; clinical fusion needs one")
    backbone = build_model(name, in_channels, num_classes, spatial_dims, input_size, **options)
    return FusionClassifier(backbone, table_features, num_classes, cam_layer=spec.cam_layer)
