"""Test-time augmentation: which views, that they transform correctly, and that averaging over
them changes nothing for a model that is already invariant to them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from monai.transforms import Rotate
from torch import nn

from medsight.errors import ConfigError
from medsight.inference.calibration import calibrated_softmax
from medsight.inference.tta import IDENTITY, View, tta_views, view_logits
from medsight.models import build_model


class Plain:
    """An engine around a module: logits for a batch."""

    def __init__(self, net: nn.Module):
        self.net, self.name = net.eval(), "plain"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(images).float()


class FlipInvariant(nn.Module):
    """Averages a network's logits over every flip combination: invariant to flips by construction."""

    def __init__(self, net: nn.Module, dims: int):
        super().__init__()
        self.net = net
        axes = range(2, 2 + dims)
        self.flips = [c for r in range(dims + 1) for c in itertools.combinations(axes, r)]

    def forward(self, x):
        return torch.stack([self.net(x.flip(f) if f else x) for f in self.flips]).mean(0)


def test_views_follow_the_trained_flips_and_add_rotations_in_2d():
    names = [v.name for v in tta_views(2, [1])]
    assert names == ["identity", "flip1", "rotate+10", "rotate-10"]
    names = [v.name for v in tta_views(2, [])]  # no flips configured: every axis
    assert names == ["identity", "flip0", "flip1", "flip0+1", "rotate+10", "rotate-10"]
    views = tta_views(3, [])
    assert len(views) == 8 and not any(v.degrees for v in views)  # no rotations in 3D
    assert views[0] is IDENTITY
    with pytest.raises(ConfigError, match="out of range"):
        tta_views(2, [2])


def test_flip_and_rotation_views_transform_the_batch():
    torch.manual_seed(0)
    x = torch.rand(5, 2, 24, 30)
    assert torch.equal(View((1,))(x), x.flip(3))
    assert torch.equal(View((0, 1))(x), x.flip(2).flip(3))
    rotated = View(degrees=10)(x)
    assert rotated.shape == x.shape and not torch.allclose(rotated, x)
    # the whole batch in one call equals MONAI's Rotate image by image
    rotate = Rotate(math.radians(10), keep_size=True, mode="bilinear", padding_mode="border")
    for i in range(5):
        assert torch.allclose(rotated[i], torch.as_tensor(rotate(x[i])), atol=1e-5)
    # a constant image stays constant (edge padding, no black corners)
    const = torch.full((2, 1, 16, 16), 0.7)
    assert torch.allclose(View(degrees=-10)(const), const, atol=1e-6)


@pytest.mark.parametrize("dims, shape", [(3, (10, 12, 14)), (2, (32, 32))])
def test_tta_of_a_flip_invariant_model_changes_nothing(dims, shape):
    torch.manual_seed(0)
    engine = Plain(FlipInvariant(build_model("simple-cnn", 1, 3, dims), dims))
    x = torch.rand(6, 1, *shape)
    views = [v for v in tta_views(dims, []) if not v.degrees]  # a flip-invariant net is not rotation-invariant
    assert len(views) == 2 ** dims
    logits = view_logits(engine, x, views)
    plain = calibrated_softmax(logits[:1]).mean(0)
    averaged = calibrated_softmax(logits).mean(0)
    assert torch.allclose(averaged, plain, atol=1e-5)
    # and the views did differ for the inner, non-invariant network
    inner = view_logits(Plain(engine.net.net), x, views)
    assert (inner - inner[:1]).abs().max() > 1e-3


def test_view_logits_shape_normalisation_and_batching():
    torch.manual_seed(1)
    engine = Plain(build_model("simple-cnn", 1, 4, 2))
    x = torch.rand(7, 1, 32, 32)
    views = tta_views(2, [0, 1])
    logits = view_logits(engine, x, views, batch_size=3)
    assert logits.shape == (len(views), 7, 4)
    assert torch.allclose(logits, view_logits(engine, x, views, batch_size=64), atol=1e-5)
    assert torch.allclose(logits[0], engine(x), atol=1e-5)  # the identity comes first
    probs = calibrated_softmax(logits, 1.7)
    assert torch.allclose(probs.sum(-1), torch.ones(len(views), 7), atol=1e-6)
    mean = probs.mean(0)
    assert mean.min() >= 0 and torch.allclose(mean.sum(-1), torch.ones(7), atol=1e-6)
