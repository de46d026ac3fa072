"""Preprocessing and augmentation, built from MONAI transforms."""

from medsight.transforms.pipeline import augmentation, preprocessing

__all__ = ["augmentation", "preprocessing"]
