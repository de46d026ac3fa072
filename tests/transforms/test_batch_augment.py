"""Batched augmentation: exact where it should be exact, aligned masks, reproducible draws."""

import pytest
import torch

from medsight.config import AugmentConfig
from medsight.errors import ConfigError
from medsight.transforms.batch_augment import BatchAugment


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _squares(n=8, size=(32, 40)):
    """Images with an off-centre bright square; the mask marks it."""
    x = torch.zeros(n, 1, *size)
    x[:, :, 4:12, 6:16] = 1.0
    return x, (x > 0.5).to(torch.uint8)


def test_probability_zero_changes_nothing():
    x, _ = _squares()
    aug = BatchAugment(AugmentConfig(rotate_degrees=30, zoom=0.2, intensity_shift=0.5, contrast=0.3,
                                     noise_std=0.1, prob=0.0), 2)
    out, _ = aug(x, _gen())
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_is_exact_and_happens_about_half_the_time():
    x, _ = _squares(n=200)
    out, _ = BatchAugment(AugmentConfig(flip=[1]), 2)(x, _gen())
    flipped = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 60 < int(flipped.sum()) < 140


def test_masks_follow_the_image_through_rotation_zoom_and_flips():
    x, m = _squares(n=16)
    aug = BatchAugment(AugmentConfig(rotate_degrees=40, zoom=0.2, flip=[0, 1], prob=1.0), 2)
    out, mask = aug(x, _gen(3), m)
    assert mask.dtype == torch.uint8 and set(mask.unique().tolist()) <= {0, 1}
    assert not torch.equal(mask, m)  # something moved
    agree = ((out > 0.5) == (mask > 0)).float().mean()
    assert agree > 0.98


def test_rotation_keeps_a_centred_disc_in_physical_units_on_a_non_square_image():
    # a disc in a 32x64 image: rotating must keep it round (no shear from normalised coords)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    disc = (((yy - 15.5) ** 2 + (xx - 31.5) ** 2) <= 8**2).float()[None, None].repeat(4, 1, 1, 1)
    out, _ = BatchAugment(AugmentConfig(rotate_degrees=90, prob=1.0), 2)(disc, _gen(1))
    assert torch.allclose(out.sum((1, 2, 3)), disc.sum((1, 2, 3)), rtol=0.03)
    assert float((out > 0.5).sum()) == pytest.approx(float((disc > 0.5).sum()), rel=0.05)


def test_same_generator_seed_same_batch_and_another_seed_differs():
    x, _ = _squares()
    aug = BatchAugment(AugmentConfig(rotate_degrees=20, zoom=0.1, noise_std=0.05, contrast=0.2, prob=0.8), 2)
    a, _ = aug(x, _gen(7))
    b, _ = aug(x, _gen(7))
    c, _ = aug(x, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_intensity_augmentations_stay_in_their_ranges():
    x = torch.rand(64, 1, 16, 16)
    out, _ = BatchAugment(AugmentConfig(intensity_shift=0.1, prob=1.0), 2)(x, _gen())
    shift = (out - x).flatten(1)
    assert torch.allclose(shift.min(1).values, shift.max(1).values, atol=1e-5)  # one offset per image
    assert shift.abs().max() <= 0.1 + 1e-6 and shift.std() > 0.01
    out, _ = BatchAugment(AugmentConfig(contrast=0.3, prob=1.0), 2)(x, _gen())
    assert torch.allclose(out.flatten(1).min(1).values, x.flatten(1).min(1).values, atol=1e-5)
    assert torch.allclose(out.flatten(1).max(1).values, x.flatten(1).max(1).values, atol=1e-5)


def test_3d_batches_and_masks():
    x = torch.zeros(4, 1, 12, 16, 20)
    x[:, :, 3:9, 4:12, 5:15] = 1
    aug = BatchAugment(AugmentConfig(rotate_degrees=15, flip=[0, 2], zoom=0.1, prob=1.0), 3)
    out, mask = aug(x, _gen(), (x > 0).to(torch.uint8))
    assert out.shape == x.shape and mask.shape == x.shape
    assert ((out > 0.5) == (mask > 0)).float().mean() > 0.97


def test_bad_flip_axis_and_wrong_rank_are_refused():
    with pytest.raises(ConfigError, match="axis 2"):
        BatchAugment(AugmentConfig(flip=[2]), 2)
    with pytest.raises(ValueError, match="2D"):
        BatchAugment(AugmentConfig(flip=[0]), 2)(torch.zeros(2, 1, 4, 4, 4), _gen())
