"""Channel adaptation: grey -> RGB by copy, RGB -> grey by BT.601 luma, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.config import TransformConfig
from medsight.errors import MedsightError
from medsight.io.image import make_image
from medsight.transforms import preprocessing
from medsight.transforms.channels import AdaptChannelsd, adapt_channels


def test_grey_to_rgb_copies_the_channel():
    grey = torch.rand(1, 5, 7)
    out = AdaptChannelsd(["image"], 3)({"image": grey, "label": 1})
    assert out["image"].shape == (3, 5, 7)
    for c in range(3):
        assert torch.equal(out["image"][c], grey[0])
    assert out["label"] == 1  # other keys untouched


def test_rgb_to_grey_uses_luma_weights():
    rgb = torch.zeros(3, 1, 4)
    rgb[0, 0, 0] = 1.0  # pure red
    rgb[1, 0, 1] = 1.0  # pure green
    rgb[2, 0, 2] = 1.0  # pure blue
    rgb[:, 0, 3] = torch.tensor([0.2, 0.4, 0.6])
    out = AdaptChannelsd(["image"], 1)({"image": rgb})["image"]
    assert out.shape == (1, 1, 4)
    expected = [0.299, 0.587, 0.114, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6]
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-6)


def test_rgba_drops_alpha():
    rgba = torch.rand(4, 3, 3)
    assert torch.equal(adapt_channels(rgba, 3), rgba[:3])
    np.testing.assert_allclose(adapt_channels(rgba, 1).numpy(), adapt_channels(rgba[:3], 1).numpy())


def test_3d_volume_channels():
    grey = torch.rand(1, 2, 3, 4)
    assert adapt_channels(grey, 3).shape == (3, 2, 3, 4)
    assert adapt_channels(torch.rand(3, 2, 3, 4), 1).shape == (1, 2, 3, 4)


def test_same_channel_count_is_unchanged():
    x = torch.rand(3, 4, 4)
    assert adapt_channels(x, 3) is x


def test_preprocessing_adapts_channels_before_normalising():
    rgb = make_image(np.stack([np.full((4, 4), 255.0), np.zeros((4, 4)), np.zeros((4, 4))]))
    out = preprocessing(TransformConfig(intensity="scale01", intensity_range=(0, 255)), 2,
                        channels=1)({"image": rgb})["image"]
    assert out.shape == (1, 4, 4)
    np.testing.assert_allclose(np.asarray(out), 0.299, rtol=1e-6)


def test_unsupported_channel_count_is_a_user_error_naming_the_file():
    from medsight.data.prepared import prepare_items

    two = make_image(torch.rand(2, 8, 8), source="two.nii.gz")
    with pytest.raises(MedsightError, match=r"two\.nii\.gz: .*2-channel"):
        prepare_items([{"image": two, "label": 0}], preprocessing(TransformConfig(channels=3), 2), 2)
