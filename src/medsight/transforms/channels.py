"""Channel adaptation, so a grey model can read an RGB photo and the other way round."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform

# ITU-R BT.601 luma weights: how a grey rendering of an RGB photo is usually made.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def adapt_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Return ``image`` (C, ...) with ``channels`` channels: RGB->grey by luma, grey->RGB by copy."""
    c = image.shape[0]
    if c == channels:
        return image
    if channels == 1 and c in (3, 4):
        weights = _LUMA.to(image.dtype).view(3, *([1] * (image.ndim - 1)))
        return (image[:3] * weights).sum(0, keepdim=True)
    if c == 1:
        return image.repeat(channels, *([1] * (image.ndim - 1)))
    if c == 4 and channels == 3:
        return image[:3]
    raise ValueError(f"cannot turn a {c}-channel image into {channels} channels")


class AdaptChannelsd(MapTransform):
    def __init__(self, keys: Sequence[Hashable], channels: int):
        super().__init__(keys)
        self.channels = channels

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = adapt_channels(d[key], self.channels)
        return d
