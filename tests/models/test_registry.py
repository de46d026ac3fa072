"""Every registered net builds in the dims it declares, has its Grad-CAM layer, checks input size."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import ConfigError
from medsight.models import MODELS, build_model, model_spec
from medsight.models.registry import ModelSpec
from tests.models.test_backbones import TINY

# Narrow ResNets keep the forward passes fast; the structure (and the cam layer) is the same.
FAST_OPTIONS = {"resnet18-small": {"width": 8}, "resnet18": {"width": 8}, "resnet50": {"width": 8},
                **{name: options for name, options in TINY.items()}}
SIZE_3D = {"simple-cnn": 16, "resnet18-small": 16, "vit": 16}  # others: 32


def _forward(model: torch.nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the activation of ``layer`` for input ``x``."""
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: seen.setdefault("out", out))
    try:
        with torch.no_grad():
            logits = model.eval()(x)
    finally:
        handle.remove()
    return logits, seen["out"]


def _cases(task: str = "classification"):
    for name, spec in MODELS.items():
        if spec.task != task:
            continue
        for dims in spec.dims:
            yield pytest.param(name, dims, id=f"{name}-{dims}d")


def test_the_registry_is_not_empty():
    assert {"simple-cnn", "resnet18-small", "resnet18", "resnet50", "densenet121"} <= set(MODELS)


@pytest.mark.parametrize("name, dims", list(_cases()))
@pytest.mark.parametrize("channels", [1, 3])
def test_builds_and_outputs_one_logit_per_class(name, dims, channels):
    spec = model_spec(name)
    size = max(spec.min_size, 32) if dims == 2 else SIZE_3D.get(name, 32)
    num_classes = 3
    model = build_model(name, channels, num_classes, dims, input_size=(size,) * dims,
                        **FAST_OPTIONS.get(name, {}))
    x = torch.rand(2, channels, *([size] * dims))
    logits, features = _forward(model, x, spec.cam_layer)
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    # Grad-CAM needs a spatial feature map at the cam layer: (B, C, *spatial)
    assert features.ndim == 2 + dims
    assert features.shape[0] == 2


@pytest.mark.parametrize("name", list(MODELS))
def test_cam_layer_exists_with_default_options(name):
    model = build_model(name, 1, 2, 2, input_size=(64, 64), **TINY.get(name, {}))
    assert MODELS[name].cam_layer in dict(model.named_modules())


CLASSIFIERS = [name for name, spec in MODELS.items() if spec.task == "classification"]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_smallest_declared_size_works(name):
    spec = model_spec(name)
    model = build_model(name, 1, 2, 2, input_size=(spec.min_size,) * 2, **FAST_OPTIONS.get(name, {}))
    logits, _ = _forward(model, torch.rand(1, 1, spec.min_size, spec.min_size), spec.cam_layer)
    assert logits.shape == (1, 2)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_input_smaller_than_min_size_is_a_config_error(name):
    spec = model_spec(name)
    too_small = (spec.min_size - 1, 64)
    with pytest.raises(ConfigError, match="transforms.spatial_size") as info:
        build_model(name, 1, 2, 2, input_size=too_small)
    assert str(spec.min_size) in str(info.value)
    assert name in str(info.value)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match="resnet19") as info:
        build_model("resnet19", 1, 2)
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("name, options", [
    ("simple-cnn", {"bogus": 1}),
    ("resnet18-small", {"widht": 8}),
    ("densenet121", {"growth": 2}),
])
def test_bad_option_is_a_config_error(name, options):
    with pytest.raises(ConfigError, match="model.options"):
        build_model(name, 1, 2, 2, **options)


def test_options_are_not_consumed_from_the_callers_dict():
    options = {"width": 8}
    build_model("resnet18-small", 1, 2, 2, **options)
    assert options == {"width": 8}
    a = build_model("resnet18-small", 1, 2, 2, **options)
    assert a.layer1[0].conv1.out_channels == 8


def test_model_option_changes_the_net():
    narrow = build_model("simple-cnn", 1, 2, 2, channels=(4, 8), hidden=16)
    wide = build_model("simple-cnn", 1, 2, 2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(narrow) < count(wide)


def test_unsupported_dims_is_a_config_error(monkeypatch):
    spec = MODELS["simple-cnn"]
    monkeypatch.setitem(MODELS, "flat-only", ModelSpec(spec.factory, spec.cam_layer, dims=(2,)))
    assert build_model("flat-only", 1, 2, 2) is not None
    with pytest.raises(ConfigError, match="3D"):
        build_model("flat-only", 1, 2, 3)


@pytest.mark.parametrize("name, dims", [c for c in _cases("segmentation") if c.values[0] in ("unet", "dynunet")])
def test_segmentation_nets_give_one_map_per_class_at_the_input_size(name, dims):
    size = (32, 48) if dims == 2 else (16, 32, 24)
    options = ({"channels": (4, 8, 16), "strides": (2, 2)} if name == "unet" else
               {"filters": [4, 8, 16, 32], "strides": [[1] * dims] + [[2] * dims] * 3})
    model = build_model(name, 2, 3, dims, input_size=size, **options).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 2, *size))
    assert out.shape == (2, 3, *size)


def test_dynunet_deep_supervision_stacks_heads_in_training():
    model = build_model("dynunet", 1, 2, 3, deep_supervision=True, filters=[4, 8, 16, 32],
                        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    out = model.train()(torch.rand(2, 1, 16, 16, 16))
    assert out.shape[:3] == (2, 3, 2) and out.shape[3:] == (16, 16, 16)  # main + 2 supervision heads
