"""Two random views of each image for contrastive pretraining, from MONAI transforms.

Medical images get medical augmentations: a random crop resized back (the SimCLR crop), flips,
a small rotation and scaling, intensity scale and shift, gaussian noise and blur. No colour
jitter or hue change: on grey images and CT it would invent contrasts no scanner makes; RGB
images (fundus, dermoscopy) get a milder brightness/contrast change, the same on every channel,
so their colours keep their balance.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    RandAffine,
    RandFlip,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleCrop,
    RandScaleIntensity,
    RandShiftIntensity,
    Resize,
)

from medsight.config import PretrainConfig


def view_transform(cfg: PretrainConfig, spatial_dims: int, size: tuple[int, ...], channels: int) -> Compose:
    """One random view of a ``(C, *size)`` image, ``size`` kept."""
    side = math.sqrt(cfg.crop_min) if spatial_dims == 2 else cfg.crop_min ** (1 / 3)
    radians = math.radians(cfg.rotate_degrees)
    intensity = cfg.intensity / 2 if channels == 3 else cfg.intensity  # RGB: mild
    steps = [RandScaleCrop(roi_scale=side, max_roi_scale=1.0, random_size=True), Resize(size)]
    if cfg.flip:
        steps += [RandFlip(prob=0.5, spatial_axis=axis) for axis in range(spatial_dims)]
    if radians:
        rotate = (radians,) if spatial_dims == 2 else (radians,) * 3
        steps.append(RandAffine(prob=0.8, rotate_range=rotate, scale_range=0.1, padding_mode="border"))
    if intensity:
        steps += [RandScaleIntensity(factors=intensity, prob=0.8), RandShiftIntensity(offsets=intensity, prob=0.8)]
    if cfg.noise_std:
        steps.append(RandGaussianNoise(prob=0.5, std=cfg.noise_std))
    if cfg.blur_prob:
        steps.append(RandGaussianSmooth(sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), sigma_z=(0.25, 1.0),
                                        prob=cfg.blur_prob))
    return Compose(steps)


class ContrastiveViews:
    """``(N, C, *S)`` images -> ``(N, 2, C, *S)``: two independent random views of each."""

    def __init__(self, cfg: PretrainConfig, spatial_dims: int, size: tuple[int, ...], channels: int):
        self.transform = view_transform(cfg, spatial_dims, tuple(size), channels)

    def seed(self, seed: int) -> None:
        """Reseed the views (every epoch), so a resumed run draws the same ones."""
        self.transform.set_random_state(seed=seed % 2**32)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with _per_sample():
            views = [[_plain(self.transform(x)) for _ in range(2)] for x in images.float()]
        return torch.stack([torch.stack(pair) for pair in views])


@contextmanager
def _per_sample():
    """One thread and no MONAI metadata while transforming one small image at a time: on a busy
    2-core machine two threads made each tiny affine product wait for the other (8x slower)."""
    threads, meta = torch.get_num_threads(), get_track_meta()
    torch.set_num_threads(1)
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(meta)
        torch.set_num_threads(threads)


def _plain(x) -> torch.Tensor:
    return (x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)).float()
