"""Distorted copies of images for restorative pretraining (``pretrain.method: restore``).

MONAI's self-supervised recipe (tutorials, ``self_supervised_pretraining``; Models Genesis,
Zhou et al. 2019): either cut-outs filled with noise (in-painting) or everything but a few
blocks filled (out-painting), then blocks of pixels shuffled in place. A network that restores
the image has to learn anatomy and texture, the features a segmentation net reuses. The
recipe's sizes, given for 96-voxel crops, are scaled to the image's shorter side.
"""

from __future__ import annotations

import torch
from monai.transforms import Compose, OneOf, RandCoarseDropout, RandCoarseShuffle

from medsight.transforms.contrastive import _per_sample, _plain

RECIPE_SIDE = 96  # the recipe's crop side; its hole sizes below are in those voxels


def distortion(size: tuple[int, ...]) -> Compose:
    """One random distortion of a ``(C, *size)`` image (size kept)."""
    side = min(size)

    def px(voxels: int) -> int:
        return max(1, round(voxels * side / RECIPE_SIDE))

    inpaint = RandCoarseDropout(holes=6, spatial_size=px(5), max_spatial_size=px(32), dropout_holes=True, prob=1.0)
    outpaint = RandCoarseDropout(holes=6, spatial_size=px(20), max_spatial_size=px(64), dropout_holes=False,
                                 prob=1.0)
    return Compose([OneOf([inpaint, outpaint]), RandCoarseShuffle(holes=10, spatial_size=px(8), prob=0.8)])


class Distortions:
    """``(N, C, *S)`` images -> the same shape, each image distorted independently."""

    def __init__(self, size: tuple[int, ...]):
        self.transform = distortion(tuple(size))

    def seed(self, seed: int) -> None:
        """Reseed (every epoch), so a resumed run draws the same distortions."""
        self.transform.set_random_state(seed=seed % 2**32)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with _per_sample():
            # a copy each: the in-painting writes into its input's memory, and the input is the target
            return torch.stack([_plain(self.transform(x.clone())) for x in images.float()])
