"""Sliding-window inference against whole-image inference, and mirror test-time augmentation."""

from __future__ import annotations

import itertools
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medsight.models import build_model
from medsight.runtime.sliding import OverBudget, sliding_probabilities, window_count

FP32 = None  # filled lazily: Runtime.create sets torch's thread count


def _fp32():
    from medsight.runtime import Runtime

    global FP32
    FP32 = FP32 or Runtime.create("fp32", channels_last=False)
    return FP32


def _net(dims: int, name: str = "unet", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    options = ({"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
               if name == "unet" else {"filters": [8, 16, 32], "strides": [[1] * dims, [2] * dims, [2] * dims],
                                       "kernel_size": [[3] * dims] * 3})
    net = build_model(name, 1, 3, dims, **options)
    # non-trivial BatchNorm statistics, then eval mode, as a trained model is served
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 1, *([16] * dims)) * 2 + 1)
    return net.eval()


def _whole(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net(x[None]), 1)[0]


@pytest.mark.parametrize("name, dims, shape", [("unet", 2, (32, 24)), ("dynunet", 3, (16, 12, 8))])
def test_sliding_window_equals_whole_image_when_the_image_fits_the_patch(name, dims, shape):
    net = _net(dims, name)
    x = torch.randn(1, *shape)
    probs = sliding_probabilities(net, x, shape, _fp32(), overlap=0.5)
    assert probs.shape == (3, *shape) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, _whole(net, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs.sum(0), torch.ones(shape))


@pytest.mark.parametrize("name, dims, shape, patch", [("unet", 2, (20, 13), (32, 32)),
                                                      ("dynunet", 3, (10, 16, 5), (16, 16, 8))])
def test_an_image_smaller_than_the_patch_is_padded_and_cropped_back(name, dims, shape, patch):
    """MONAI pads the image to the patch (zeros, centred): the result is the padded image's
    whole-image prediction, cropped back to the image's own voxels."""
    net = _net(dims, name)
    x = torch.randn(1, *shape)
    probs = sliding_probabilities(net, x, patch, _fp32())
    assert probs.shape == (3, *shape)
    pads, crop = [], []
    for s, p in zip(reversed(shape), reversed(patch)):
        pads += [(p - s) // 2, p - s - (p - s) // 2]
    for s, p in zip(shape, patch):
        crop.append(slice((p - s) // 2, (p - s) // 2 + s))
    expected = _whole(net, F.pad(x, pads))[(slice(None), *crop)]
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)


class _Pointwise(nn.Module):
    """A 1x1 convolution: its output at a voxel depends on that voxel alone, so any window
    blending that sums weights correctly reproduces the whole-image output exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_gaussian_blending_of_overlapping_windows_is_normalised(overlap):
    net = _Pointwise().eval()
    x = torch.randn(1, 53, 37)
    probs = sliding_probabilities(net, x, (16, 16), _fp32(), batch_size=3, overlap=overlap)
    torch.testing.assert_close(probs, _whole(net, x), atol=1e-5, rtol=1e-5)


class _FlipSymmetric(nn.Module):
    """A net averaged over every flip of the spatial axes: flipping its input flips its output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        dims = tuple(range(2, x.ndim))
        flips = [f for r in range(len(dims) + 1) for f in itertools.combinations(dims, r)]
        return sum(self.net(x.flip(f)).flip(f) if f else self.net(x) for f in flips) / len(flips)


@pytest.mark.parametrize("dims, shape, patch", [(2, (32, 32), (32, 32)), (2, (48, 32), (32, 32)),
                                                (3, (16, 16, 8), (16, 16, 8))])
def test_mirror_tta_of_a_flip_symmetric_model_changes_nothing(dims, shape, patch):
    net = _FlipSymmetric(_net(dims)).eval()
    x = torch.randn(1, *shape)
    x[0, : shape[0] // 3] += 2.0  # an asymmetric image, so flips do change the input
    plain = sliding_probabilities(net, x, patch, _fp32(), mirror=False)
    mirrored = sliding_probabilities(net, x, patch, _fp32(), mirror=True)
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=1e-5)
    # ...while for the plain (asymmetric) net mirroring does change the probabilities
    inner = net.net
    assert not torch.allclose(sliding_probabilities(inner, x, patch, _fp32(), mirror=True),
                              sliding_probabilities(inner, x, patch, _fp32(), mirror=False), atol=1e-4)


class _Counting(_Pointwise):
    """Counts the windows it is given, and takes ``pause`` seconds per batch."""

    def __init__(self, pause: float = 0.0):
        super().__init__()
        self.windows, self.calls, self.pause = 0, 0, pause

    def forward(self, x):
        self.windows += x.shape[0]
        self.calls += 1
        time.sleep(self.pause)
        return super().forward(x)


@pytest.mark.parametrize("shape, patch, overlap", [((53, 37), (16, 16), 0.5), ((16, 40), (16, 16), 0.25),
                                                   ((10, 100), (16, 24), 0.0), ((64, 64), (16, 16), 0.75)])
def test_window_count_is_the_number_of_windows_monai_runs(shape, patch, overlap):
    net = _Counting().eval()
    sliding_probabilities(net, torch.randn(1, *shape), patch, _fp32(), batch_size=3, overlap=overlap)
    assert window_count(shape, patch, overlap) == net.windows


def test_a_deadline_that_cannot_be_met_stops_after_a_few_windows_with_an_estimate():
    net = _Counting(pause=0.02).eval()
    x = torch.randn(1, 160, 160)  # 361 windows of 16 at overlap 0.5, one per call: ~7 s
    with pytest.raises(OverBudget) as stopped:
        sliding_probabilities(net, x, (16, 16), _fp32(), batch_size=1, deadline=time.monotonic() + 1.0)
    assert net.calls <= 3  # the first two calls time it; the estimate then says it is too long
    assert 5.0 < stopped.value.seconds < 60.0
    # a deadline that has passed stops before any window; one that leaves room changes nothing
    with pytest.raises(OverBudget):
        sliding_probabilities(net, x, (16, 16), _fp32(), deadline=time.monotonic() - 1.0)
    small = torch.randn(1, 32, 32)
    torch.testing.assert_close(sliding_probabilities(_Pointwise().eval(), small, (16, 16), _fp32(),
                                                     deadline=time.monotonic() + 60.0),
                               _whole(_Pointwise().eval(), small), atol=1e-5, rtol=1e-5)
