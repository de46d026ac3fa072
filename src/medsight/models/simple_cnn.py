"""The classic net: conv-pool-conv-pool-dense, in 2D or 3D."""

from __future__ import annotations

from torch import nn


class SimpleCNN(nn.Module):
    """Two conv/pool stages and a two-layer dense head; works for any input size >= 8."""

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 2,
                 channels: tuple[int, int] = (32, 64), hidden: int = 128, dropout: float = 0.25,
                 norm: str = "batch"):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        norm = _norm(norm, spatial_dims)
        # Max, not average: a small lesion must not be averaged away over a large field.
        adaptive = nn.AdaptiveMaxPool2d if spatial_dims == 2 else nn.AdaptiveMaxPool3d
        c1, c2 = channels
        self.features = nn.Sequential(
            conv(in_channels, c1, 3, padding=1), norm(c1), nn.ReLU(inplace=True), pool(2),
            conv(c1, c2, 3, padding=1), norm(c2), nn.ReLU(inplace=True),
        )
        # Pool after the last conv is kept apart so Grad-CAM can hook the conv features.
        self.pool = nn.Sequential(pool(2), adaptive(4))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 4**spatial_dims, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


def _norm(kind: str, spatial_dims: int):
    """Batch norm by default; group norm and none do not depend on the batch (DDP-exact)."""
    if kind == "batch":
        return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
    if kind == "group":
        return lambda c: nn.GroupNorm(min(8, c), c)
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"norm must be batch, group or none, not {kind!r}")
