"""The stages the input guard taps, found from the module tree of any registered classifier."""

from __future__ import annotations

import pytest
import torch

from medsight.models.registry import build_model
from medsight.models.taps import INPUT, MAX_TAPS, input_statistics, pooled, tap_names, tapped


@pytest.mark.parametrize("name, options, size, expected", [
    ("simple-cnn", {}, 28, ["features.0", "features.1", "features.4", "features.5"]),
    ("resnet18-small", {"width": 8}, 28, ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]),
    ("vit", {"hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_heads": 2}, 32,
     ["patch_embedding", "blocks.0", "blocks.1", "norm"]),
])
def test_taps_are_the_stages_before_the_head_and_pool_per_channel(name, options, size, expected):
    model = build_model(name, 1, 3, 2, input_size=(size, size), **options).eval()
    names = tap_names(model)
    assert names == [INPUT, *expected]
    with tapped(model, names) as captured:
        logits = model(torch.randn(2, 1, size, size))
    assert logits.shape == (2, 3)
    assert all(len(captured[n]) == 1 and captured[n][0].shape[0] == 2 for n in names)
    assert captured[INPUT][0].shape == (2, 11)  # mean, std and 9 quantiles of one channel
    with tapped(model, names) as captured:
        pass
    model(torch.randn(1, 1, size, size))  # the hooks are gone once closed
    assert all(not v for v in captured.values())


def test_efficientnet_taps_are_capped_and_spread():
    model = build_model("efficientnet-b0", 1, 2, 2, input_size=(32, 32)).eval()
    names = tap_names(model)
    assert len(names) == MAX_TAPS + 1 and names[1] == "_conv_stem" and names[-1] != "_fc"


def test_pooled_statistics_tell_texture_from_intensity():
    flat = torch.full((1, 2, 8, 8), 0.5)
    noisy = flat + torch.randn(1, 2, 8, 8)
    assert torch.allclose(pooled(flat), torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    assert (pooled(noisy)[0, 2:] > 0.5).all()  # the standard deviations see the texture
    tokens = torch.randn(3, 10, 4)  # a transformer's (N, L, D): statistics over the tokens
    assert pooled(tokens).shape == (3, 8)
    x = torch.arange(100.0).reshape(1, 1, 10, 10)
    stats = input_statistics(x)[0]
    assert stats[0] == pytest.approx(49.5) and stats[2] < stats[-1]  # mean; quantiles ascend
