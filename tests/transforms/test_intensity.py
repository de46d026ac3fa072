"""Intensity normalisation: CT windows in HU, z-score, fixed-range and per-image [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.config import TransformConfig, WindowConfig
from medsight.errors import ConfigError
from medsight.io.image import make_image
from medsight.transforms import preprocessing
from medsight.transforms.intensity import window_range


def _normalise(values, **transforms) -> np.ndarray:
    """Run the 2D preprocessing built from ``transforms`` on an image holding ``values``."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, None, :]  # (C=1, H=1, W)
    out = preprocessing(TransformConfig(**transforms), spatial_dims=2)({"image": make_image(array)})
    return np.asarray(out["image"])


# Level and width in HU as radiology workstations ship them (written out here, not
# copied from the table under test, so a typo in the table fails).
DOCUMENTED = {
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "abdomen": (40, 400),
    "brain": (40, 80),
    "bone": (400, 1800),
}


def test_lung_window_maps_its_edges_to_0_and_1_and_clips_outside():
    hu = [-3000, -1350, -600, 150, 3000]
    out = _normalise(hu, intensity="window", window={"preset": "lung"})[0, 0]
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_window_is_linear_inside():
    hu = np.linspace(-1350, 150, 7)
    out = _normalise(hu, intensity="window", window={"preset": "lung"})[0, 0]
    np.testing.assert_allclose(out, np.linspace(0, 1, 7), atol=1e-6)


@pytest.mark.parametrize("preset", sorted(DOCUMENTED))
def test_each_preset_has_the_documented_level_and_width(preset):
    level, width = DOCUMENTED[preset]
    assert window_range(WindowConfig(preset=preset)) == pytest.approx((level - width / 2, level + width / 2))
    # and the transform really uses that interval
    out = _normalise([level - width / 2, level, level + width / 2], intensity="window",
                     window={"preset": preset})[0, 0]
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-6)


def test_explicit_level_and_width():
    assert window_range(WindowConfig(level=40, width=80)) == (0.0, 80.0)
    out = _normalise([-10, 0, 20, 80, 200], intensity="window", window={"level": 40, "width": 80})[0, 0]
    np.testing.assert_allclose(out, [0.0, 0.0, 0.25, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("window", [{}, {"width": 400}, {"level": 40}])
def test_window_needs_a_preset_or_level_and_width(window):
    cfg = TransformConfig(intensity="window", window=window)
    with pytest.raises(ConfigError, match="transforms.window"):
        preprocessing(cfg, spatial_dims=2)


def test_zscore_gives_zero_mean_unit_std_per_channel():
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(100, 20, (32, 32)), rng.normal(-5, 0.1, (32, 32))]).astype(np.float32)
    out = _normalise(image, intensity="zscore")
    for channel in out:
        assert abs(channel.mean()) < 1e-4
        assert channel.std() == pytest.approx(1.0, abs=1e-2)
    # a monotone map: the order of pixels is kept
    assert np.array_equal(np.argsort(out[0].ravel()), np.argsort(image[0].ravel()))


def test_scale01_with_a_fixed_range_is_not_per_image():
    out = _normalise([0, 51, 200, 255, 300], intensity="scale01", intensity_range=(0, 255))[0, 0]
    # 200 stays 200/255: a dark photo must stay dark, not be stretched to 1
    np.testing.assert_allclose(out, [0.0, 0.2, 200 / 255, 1.0, 1.0], atol=1e-6)


def test_scale01_without_a_range_stretches_each_image():
    a = _normalise([50, 100, 200], intensity="scale01")[0, 0]
    b = _normalise([-7, 3, 13], intensity="scale01")[0, 0]
    np.testing.assert_allclose(a, [0.0, 1 / 3, 1.0], atol=1e-6)
    np.testing.assert_allclose(b, [0.0, 0.5, 1.0], atol=1e-6)


def test_intensity_none_leaves_values_unchanged():
    values = [-1000.0, 0.0, 1234.5]
    np.testing.assert_array_equal(_normalise(values, intensity="none")[0, 0], values)


def test_output_is_float32_tensor_with_meta():
    out = preprocessing(TransformConfig(intensity="window", window={"preset": "lung"}), 2)(
        {"image": make_image(torch.zeros(1, 4, 4), spacing=(0.7, 0.7), modality="CT")})["image"]
    assert out.dtype == torch.float32
    assert out.meta["modality"] == "CT"


@pytest.mark.parametrize("channels", [1, 3])
def test_percentile_scaling_gives_monais_numbers_and_leaves_the_input_alone(channels):
    from monai.data import MetaTensor
    from monai.transforms import ScaleIntensityRangePercentilesd

    from medsight.transforms.intensity import PercentileScaled

    torch.manual_seed(0)
    x = torch.randn(channels, 20, 18, 7) * torch.arange(1, channels + 1).view(-1, 1, 1, 1) * 100 + 40
    x[0, 0, 0, 0] = 1e6  # an extreme voxel the percentiles ignore
    image = MetaTensor(x.clone(), affine=torch.diag(torch.tensor([0.7, 0.7, 1.5, 1.0])))
    ours = PercentileScaled(["image"])({"image": image})["image"]
    monai = ScaleIntensityRangePercentilesd(["image"], lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True,
                                            channel_wise=True)({"image": image})["image"]
    torch.testing.assert_close(ours.as_tensor(), torch.as_tensor(monai).float(), atol=1e-6, rtol=1e-5)
    assert torch.equal(image.as_tensor(), x)  # the caller's image is not scaled in place
    assert isinstance(ours, MetaTensor) and torch.equal(ours.affine, image.affine)
    assert float(ours.min()) == 0.0 and float(ours.max()) == 1.0


def test_percentile_scaling_of_a_constant_channel_subtracts_it_as_monai_does():
    from medsight.transforms.intensity import PercentileScaled

    out = PercentileScaled(["image"])({"image": torch.full((1, 4, 4), 7.0)})["image"]
    assert torch.equal(out, torch.zeros(1, 4, 4))
