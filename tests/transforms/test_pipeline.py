"""Resizing keeps geometry; augmentation is shape-preserving, seeded and consistent with masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.config import AugmentConfig, TransformConfig
from medsight.data.synthetic import synthetic_sample
from medsight.errors import ConfigError
from medsight.io.image import make_image, spacing_of
from medsight.transforms import augmentation, preprocessing

ALL_AUGMENTS = AugmentConfig(rotate_degrees=20, flip=[0, 1], zoom=0.15, intensity_shift=0.1,
                             contrast=0.2, noise_std=0.05, prob=1.0)


def _augment(aug, image: torch.Tensor, seed: int, **extra) -> dict:
    aug.set_random_state(seed)
    return aug({"image": image.clone(), **{k: v.clone() for k, v in extra.items()}})


@pytest.mark.parametrize("size", [[32, 32], [32, 48], [128, 96]])
def test_resize_keeps_the_physical_extent(size):
    image = synthetic_sample(0, "test", 0)["image"]  # 64 x 64 at 350/64 mm
    out = preprocessing(TransformConfig(spatial_size=size, intensity="none"), 2)({"image": image})["image"]
    assert list(out.shape[1:]) == size
    before = np.array(spacing_of(image))
    after = np.array(spacing_of(out))
    np.testing.assert_allclose(after, before * 64 / np.array(size), rtol=1e-6)
    np.testing.assert_allclose(after * np.array(size), before * 64, rtol=1e-6)  # 350 mm either way


def test_resize_resamples_masks_with_nearest_neighbour():
    item = synthetic_sample(0, "test", 0)
    assert item["label"] == 1  # has a nodule
    out = preprocessing(TransformConfig(spatial_size=[40, 40], intensity="none"), 2,
                        mask_keys=["mask"])({"image": item["image"], "mask": item["mask"]})
    assert out["mask"].shape == (1, 40, 40)
    assert set(torch.unique(out["mask"]).tolist()) == {0.0, 1.0}


def test_spatial_size_of_the_wrong_length_is_a_config_error():
    with pytest.raises(ConfigError, match="transforms.spatial_size"):
        preprocessing(TransformConfig(spatial_size=[32, 32, 32]), 2)


def test_no_augmentation_configured_gives_none():
    assert augmentation(TransformConfig(), 2) is None


def test_augmentation_keeps_shape_and_is_seeded():
    aug = augmentation(TransformConfig(augment=ALL_AUGMENTS), 2)
    image = torch.rand(1, 48, 40)
    a = torch.as_tensor(_augment(aug, image, 1)["image"])
    b = torch.as_tensor(_augment(aug, image, 1)["image"])
    c = torch.as_tensor(_augment(aug, image, 2)["image"])
    assert a.shape == image.shape
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    assert not torch.allclose(a, image, atol=1e-3)  # prob=1: something happened


def test_spatial_augmentation_moves_mask_with_image():
    """Rotation, flips and zoom must hit image and mask alike (mask with nearest neighbour)."""
    item = synthetic_sample(0, "test", 0)
    mask = item["mask"]
    assert mask.sum() > 10
    spatial = AugmentConfig(rotate_degrees=30, flip=[0, 1], zoom=0.2, prob=1.0)
    aug = augmentation(TransformConfig(augment=spatial), 2, mask_keys=["mask"])
    for seed in range(4):
        out = _augment(aug, mask.clone(), seed, mask=mask)  # the "image" is the mask as floats
        img, msk = np.asarray(out["image"])[0], np.asarray(out["mask"])[0]
        assert set(np.unique(msk).tolist()) <= {0.0, 1.0}
        agreement = ((img > 0.5) == (msk > 0.5)).mean()
        assert agreement > 0.99, (seed, agreement)


@pytest.mark.parametrize("axis", [2, 5])
def test_flip_axis_out_of_range_is_a_config_error(axis):
    cfg = TransformConfig(augment=AugmentConfig(flip=[axis]))
    with pytest.raises(ConfigError, match="flip"):
        augmentation(cfg, 2)


def test_flip_axis_2_is_fine_in_3d():
    assert augmentation(TransformConfig(augment=AugmentConfig(flip=[2])), 3) is not None


def test_3d_pipeline_with_rotation():
    rng = np.random.default_rng(0)
    volume = make_image(rng.normal(0, 1, (1, 12, 16, 20)).astype(np.float32), spacing=(2.0, 1.0, 1.0))
    cfg = TransformConfig(spatial_size=[8, 8, 8], intensity="zscore",
                          augment=AugmentConfig(rotate_degrees=30, prob=1.0))
    pre = preprocessing(cfg, 3)({"image": volume})["image"]
    assert pre.shape == (1, 8, 8, 8)
    np.testing.assert_allclose(spacing_of(pre), (3.0, 2.0, 2.5), rtol=1e-6)
    assert abs(float(pre.mean())) < 1e-4
    aug = augmentation(cfg, 3)
    a = torch.as_tensor(_augment(aug, pre, 3)["image"])
    b = torch.as_tensor(_augment(aug, pre, 3)["image"])
    assert a.shape == (1, 8, 8, 8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, torch.as_tensor(pre), atol=1e-3)


def test_3d_rotation_turns_about_more_than_one_axis():
    """range_y/range_z are set in 3D: some seed must move a bar lying along the first axis."""
    bar = torch.zeros(1, 17, 17, 17)
    bar[0, :, 8, 8] = 1.0  # a line along axis 0 is unchanged by rotations about axis 0 only
    aug = augmentation(TransformConfig(augment=AugmentConfig(rotate_degrees=45, prob=1.0)), 3)
    moved = [float((torch.as_tensor(_augment(aug, bar, s)["image"]) - bar).abs().sum()) for s in range(3)]
    assert max(moved) > 2.0, moved
