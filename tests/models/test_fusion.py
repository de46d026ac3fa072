"""The fusion head around registered classifiers, and the batch that carries images and table."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import ConfigError
from medsight.inference.explain import explain
from medsight.models.fusion import FusionClassifier, fusion_model
from medsight.models.registry import cam_layer
from medsight.runtime import Runtime
from medsight.transforms.fusion_batch import FusionBatch

CLASSIFIERS = [("simple-cnn", {}, 16), ("resnet18-small", {"width": 8}, 16), ("resnet18", {"width": 8}, 32),
               ("densenet121", {"growth_rate": 4, "init_features": 8}, 32)]


def batch(n=3, channels=2, size=16, features=5) -> FusionBatch:
    g = torch.Generator().manual_seed(0)
    return FusionBatch(torch.rand(n, channels, size, size, generator=g), torch.randn(n, features, generator=g))


@pytest.mark.parametrize("name, options, size", CLASSIFIERS)
def test_every_registered_classifier_fuses_and_exposes_its_cam_layer(name, options, size):
    torch.manual_seed(0)
    model = fusion_model(name, 2, 3, 2, table_features=5, **options).eval()
    x = batch(size=size)
    logits = model(x)
    assert logits.shape == (3, 3)
    assert torch.equal(model(x.images, x.table), logits)
    # the table is really read: other clinical values, other scores
    assert not torch.allclose(model(FusionBatch(x.images, x.table + 3)), logits)
    layer = cam_layer(model, name)
    assert layer.startswith("backbone.")
    model.get_submodule(layer)  # resolves (Grad-CAM hooks it)


def test_grad_cam_explains_the_image_branch_of_a_fused_model():
    torch.manual_seed(0)
    model = fusion_model("resnet18-small", 1, 2, 2, table_features=4, width=8)
    one = FusionBatch(torch.rand(1, 20, 20), torch.randn(4))
    heat = explain(model, "resnet18-small", one, class_index=1)
    assert heat.shape == (20, 20) and heat.dtype.name == "float32"
    assert 0.0 <= heat.min() <= heat.max() <= 1.0
    assert not any(m._forward_hooks for m in model.modules())  # nothing left behind


def test_the_batch_moves_indexes_and_splits_like_an_image_batch():
    x = batch(n=5)
    moved = Runtime(torch.device("cpu"), False, False, 1).batch(x)
    assert isinstance(moved, FusionBatch) and torch.equal(moved.table, x.table)
    cl = x.to(torch.device("cpu"), memory_format=torch.channels_last)
    assert cl.images.is_contiguous(memory_format=torch.channels_last)
    assert x.to(torch.device("cpu"), torch.float64).table.dtype == torch.float64
    assert len(x) == 5 and x.ndim == 4 and x.shape == x.images.shape
    part = x[torch.tensor([4, 1])]
    assert torch.equal(part.table, x.table[[4, 1]]) and torch.equal(part.images, x.images[[4, 1]])
    assert x[None].images.shape[0] == 1 and x[None].table.shape == (1, 5, 5)
    halves = x.tensor_split(2)
    assert [len(h) for h in halves] == [3, 2] and torch.equal(halves[1].table, x.table[3:])


def test_without_its_table_or_with_a_segmentation_net_it_says_so():
    model = fusion_model("simple-cnn", 1, 2, 2, table_features=3)
    with pytest.raises(ValueError, match="needs the clinical table"):
        model(torch.rand(2, 1, 16, 16))
    with pytest.raises(ConfigError, match="not a classifier"):
        fusion_model("unet", 1, 2, 2, table_features=3)
    with pytest.raises(ConfigError, match="at least one clinical feature"):
        FusionClassifier(torch.nn.Linear(4, 2), 0, 2)
