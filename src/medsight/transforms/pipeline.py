"""Build the deterministic preprocessing and the random augmentation from the config.

Preprocessing runs once per run and is cached; augmentation runs on every training batch.
Both are dictionary transforms over ``image`` keys (and, for segmentation, mask keys that
are resampled with nearest neighbour).
"""

from __future__ import annotations

import math
from typing import Sequence

from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandRotated,
    RandShiftIntensityd,
    RandZoomd,
    Resize,
    Resized,
    Spacingd,
    SpatialPad,
)

from medsight.config import TransformConfig
from medsight.errors import ConfigError
from medsight.transforms.channels import AdaptChannelsd
from medsight.transforms.intensity import intensity_transform


def preprocessing(cfg: TransformConfig, spatial_dims: int, channels: int | None = None,
                  image_keys: Sequence[str] = ("image",), mask_keys: Sequence[str] = ()) -> Compose:
    """Resample, resize, adapt channels and normalise intensity (deterministic)."""
    keys = [*image_keys, *mask_keys]
    modes = ["bilinear"] * len(image_keys) + ["nearest"] * len(mask_keys)
    steps = []
    if cfg.spacing is not None:
        _check_len("transforms.spacing", cfg.spacing, spatial_dims)
        steps.append(Spacingd(keys, pixdim=cfg.spacing, mode=modes))
    if cfg.spatial_size is not None:
        _check_len("transforms.spatial_size", cfg.spatial_size, spatial_dims)
        if cfg.resize == "fit":
            steps.append(FitResized(list(image_keys), list(mask_keys), cfg.spatial_size))
        else:
            # MONAI's own (invertible: segment maps probabilities back through it)
            steps.append(Resized(list(image_keys), spatial_size=cfg.spatial_size, mode="bilinear",
                                 anti_aliasing=True))
            if mask_keys:
                steps.append(Resized(list(mask_keys), spatial_size=cfg.spatial_size, mode="nearest"))
    channels = cfg.channels or channels
    if channels is not None:
        steps.append(AdaptChannelsd(list(image_keys), channels))
    norm = intensity_transform(cfg, list(image_keys))
    if norm is not None:
        steps.append(norm)
    steps.append(EnsureTyped(keys, track_meta=True))
    return Compose(steps)


class FitResized(MapTransform):
    """Resize keeping the aspect ratio so the image fits ``spatial_size``, then pad (centred,
    zeros) to exactly that size: nothing is stretched and nothing is cut off.

    Images shrunk on every axis are area-averaged (anti-aliased by construction, and ~30x
    faster on a 1024² X-ray than Gaussian smoothing before bilinear sampling, which dominated
    preprocessing); images enlarged on any axis are sampled bilinearly, masks nearest."""

    def __init__(self, image_keys: Sequence[str], mask_keys: Sequence[str], spatial_size: Sequence[int]):
        super().__init__([*image_keys, *mask_keys])
        self.image_keys, self.mask_keys, self.size = list(image_keys), list(mask_keys), list(spatial_size)
        self.pad = SpatialPad(self.size)

    def __call__(self, data):
        d = dict(data)
        shape = d[self.keys[0]].shape[1:]
        scale = min(t / s for t, s in zip(self.size, shape))
        fitted = [min(t, max(1, round(s * scale))) for t, s in zip(self.size, shape)]
        shrink = all(f <= s for f, s in zip(fitted, shape))
        for key in self.key_iterator(d):
            mode = "nearest" if key in self.mask_keys else "area" if shrink else "bilinear"
            d[key] = self.pad(Resize(fitted, mode=mode)(d[key]))
        return d


def augmentation(cfg: TransformConfig, spatial_dims: int, image_keys: Sequence[str] = ("image",),
                 mask_keys: Sequence[str] = ()) -> Compose | None:
    """Random spatial and intensity augmentation, or None when none is configured."""
    a = cfg.augment
    if a is None or not a.enabled:
        return None
    keys = [*image_keys, *mask_keys]
    spatial_modes = ["bilinear"] * len(image_keys) + ["nearest"] * len(mask_keys)
    steps = []
    if a.rotate_degrees:
        r = math.radians(a.rotate_degrees)
        extra = {"range_y": r, "range_z": r} if spatial_dims == 3 else {}
        steps.append(RandRotated(keys, range_x=r, prob=a.prob, mode=spatial_modes,
                                 padding_mode="border", **extra))
    for axis in a.flip:
        if not 0 <= axis < spatial_dims:
            raise ConfigError(f"transforms.augment.flip: axis {axis} out of range for {spatial_dims}D")
        steps.append(RandFlipd(keys, prob=0.5, spatial_axis=axis))
    if a.zoom:
        steps.append(RandZoomd(keys, prob=a.prob, min_zoom=1 - a.zoom, max_zoom=1 + a.zoom,
                               mode=["bilinear" if m == "bilinear" else "nearest" for m in spatial_modes],
                               padding_mode="edge", keep_size=True))
    if a.intensity_shift:
        steps.append(RandShiftIntensityd(list(image_keys), offsets=a.intensity_shift, prob=a.prob))
    if a.contrast:
        steps.append(RandAdjustContrastd(list(image_keys), prob=a.prob,
                                         gamma=(1 - a.contrast, 1 + a.contrast)))
    if a.noise_std:
        steps.append(RandGaussianNoised(list(image_keys), prob=a.prob, std=a.noise_std))
    return Compose(steps)


def _check_len(name: str, value: Sequence, spatial_dims: int) -> None:
    if len(value) != spatial_dims:
        raise ConfigError(f"{name}: expected {spatial_dims} values for {spatial_dims}D images, got {list(value)}")
