"""The larger backbones: each builds tiny, runs at its smallest size in fp32, bf16 autocast and
channels-last, has the Grad-CAM layer it declares, and exports to ONNX matching PyTorch."""

from __future__ import annotations

import sys

import pytest
import torch

from medsight.errors import ConfigError
from medsight.inference.engine import OnnxEngine
from medsight.inference.export import TOLERANCE, max_difference, to_onnx
from medsight.models import build_model, model_spec
from medsight.runtime import cpu_has_native_bf16

# Small widths and depths: the same classes and code paths as the defaults, a fraction of the time.
TINY = {
    "efficientnet-b0": {},
    "vit": {"hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_heads": 2},
    "segresnet": {"init_filters": 8},  # group norm: 8 groups
    "swinunetr": {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
    "unetr": {"feature_size": 4, "hidden_size": 32, "mlp_dim": 64, "num_heads": 2},
    "flexunet": {"decoder_channels": (16, 16, 8, 8, 8)},
}


def _tiny(name: str, dims: int = 2, channels: int = 1, classes: int = 3):
    size = max(model_spec(name).min_size, model_spec(name).multiple, 16 if dims == 3 else 32)
    model = build_model(name, channels, classes, dims, input_size=(size,) * dims, **TINY[name]).eval()
    return model, torch.rand(2, channels, *([size] * dims), generator=torch.Generator().manual_seed(0))


def _expected_shape(name: str, x: torch.Tensor, classes: int = 3) -> tuple:
    return (2, classes) if model_spec(name).task == "classification" else (2, classes, *x.shape[2:])


@pytest.mark.parametrize("name", list(TINY))
def test_builds_tiny_and_runs_in_fp32_bf16_and_channels_last(name):
    model, x = _tiny(name)
    with torch.no_grad():
        out = model(x)
        assert out.shape == _expected_shape(name, x) and torch.isfinite(out).all()
        if cpu_has_native_bf16() or name == "vit":  # emulated bf16 convolutions take minutes
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = model(x)
            assert torch.isfinite(half.float()).all()
            assert (half.float() - out).abs().max() < 0.25 * out.abs().max() + 0.25  # bf16: the same function
        last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(last, out, atol=1e-4)


@pytest.mark.parametrize("name, dims", [("segresnet", 3), ("unetr", 3), ("vit", 3)])
def test_3d_variants_give_the_output_shape(name, dims):
    model, x = _tiny(name, dims)
    with torch.no_grad():
        assert model(x).shape == _expected_shape(name, x)


@pytest.mark.parametrize("name", [n for n in TINY if model_spec(n).task == "classification"])
def test_classifiers_have_a_spatial_grad_cam_layer_that_gets_gradients(name):
    model, x = _tiny(name)
    layer = model.get_submodule(model_spec(name).cam_layer)
    seen = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.setdefault("out", out))
    try:
        model(x)[:, 1].sum().backward()
    finally:
        handle.remove()
    assert seen["out"].ndim == 4 and seen["out"].shape[2:] != (1, 1)  # a map, not a vector
    first = next(p for p in model.parameters() if p.ndim >= 3)  # the stem: gradients went through the map
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(TINY))
def test_onnx_export_matches_pytorch(name, tmp_path):
    pytest.importorskip("onnxruntime")
    model, x = _tiny(name)
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(model, list(x.shape[1:])))
    assert max_difference(model, OnnxEngine(path, 1), list(x.shape[1:])) <= TOLERANCE * 10


def test_vit_needs_an_input_size_and_a_patch_that_divides_it():
    with pytest.raises(ConfigError, match="transforms.spatial_size"):
        build_model("vit", 1, 2, 2)
    with pytest.raises(ConfigError, match="patch"):
        build_model("vit", 1, 2, 2, input_size=(31, 31), **TINY["vit"])
    assert build_model("vit", 1, 2, 2, input_size=(28, 28), **TINY["vit"]).grid == (7, 7)  # MedMNIST: patch 4


def test_input_sides_must_be_multiples_of_what_the_net_downsamples_by():
    with pytest.raises(ConfigError, match="multiples of 32"):
        build_model("swinunetr", 1, 2, 2, input_size=(64, 80), **TINY["swinunetr"])


def test_timm_names_a_one_line_problem_where_timm_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError, as when it is absent or broken
    with pytest.raises(ConfigError) as info:
        build_model("timm:convnext_tiny", 1, 2, 2)
    message = str(info.value)
    assert "timm:convnext_tiny" in message and "needs timm" in message and "\n" not in message
    with pytest.raises(ConfigError, match="supports 2D input, not 3D"):
        build_model("timm:convnext_tiny", 1, 2, 3)


def test_a_net_without_a_spatial_layer_is_explained_by_occlusion(monkeypatch):
    import numpy as np

    from medsight.inference.explain import explain, occlusion_map
    from medsight.models.registry import MODELS, ModelSpec

    monkeypatch.setitem(MODELS, "tokens-only", ModelSpec(MODELS["simple-cnn"].factory, ""))  # as a timm ViT
    torch.manual_seed(0)
    model = build_model("tokens-only", 1, 2, 2, channels=(4, 8), hidden=8).eval()
    image = torch.rand(1, 16, 16)
    heat = explain(model, "tokens-only", image, 1, "gradcam")
    assert heat.shape == (16, 16) and heat.max() > 0
    assert np.allclose(heat, occlusion_map(model, image[None], 1))
