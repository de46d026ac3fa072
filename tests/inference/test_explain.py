"""Grad-CAM heatmaps: shape, range, and that a trained model's heat sits on the nodules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from medsight.data.synthetic import synthetic_sample
from medsight.errors import ConfigError
from medsight.inference.explain import METHODS, explain
from medsight.inference.load import load_run
from medsight.models import build_model, model_spec

N_NODULE_CASES = 10


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_run(trained_run)


def _nodule_cases(n: int) -> list[dict]:
    cases, index = [], 0
    while len(cases) < n:
        item = synthetic_sample(0, "test", index)
        if item["label"] == 1:
            cases.append(item)
        index += 1
    return cases


def _model_input(loaded, item) -> torch.Tensor:
    return loaded.preprocess()({"image": item["image"]})["image"].as_tensor()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_heatmap_on_the_trained_model_has_image_shape_and_unit_range(loaded, method):
    x = _model_input(loaded, _nodule_cases(1)[0])
    heat = explain(loaded.model, loaded.cfg.model.name, x, 1, method)
    assert isinstance(heat, np.ndarray)
    assert heat.shape == tuple(x.shape[1:]) == (64, 64)
    assert np.isfinite(heat).all()
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() == pytest.approx(1.0, abs=1e-3)  # min-max scaled, not all zero
    assert heat.std() > 0.01


@pytest.mark.parametrize("dims, shape", [(2, (40, 56)), (3, (12, 16, 20))])
def test_heatmap_shape_for_other_sizes_and_3d(dims, shape):
    torch.manual_seed(0)
    model = build_model("simple-cnn", 1, 2, dims).eval()
    heat = explain(model, "simple-cnn", torch.rand(1, *shape), 1)
    assert heat.shape == shape
    assert np.isfinite(heat).all() and 0.0 <= heat.min() and heat.max() <= 1.0


def test_heatmap_for_rgb_input_is_one_map():
    torch.manual_seed(0)
    model = build_model("simple-cnn", 3, 4, 2).eval()
    heat = explain(model, "simple-cnn", torch.rand(3, 32, 32), 3)
    assert heat.shape == (32, 32)


def test_heat_sits_on_the_nodules(loaded):
    """Content test: on a trained model, the nodule pixels get more heat than the rest."""
    inside, outside = [], []
    for item in _nodule_cases(N_NODULE_CASES):
        heat = explain(loaded.model, loaded.cfg.model.name, _model_input(loaded, item), 1)
        mask = item["mask"][0].numpy() > 0
        assert mask.shape == heat.shape and mask.any()
        inside.append(heat[mask].mean())
        outside.append(heat[~mask].mean())
    mean_in, mean_out = float(np.mean(inside)), float(np.mean(outside))
    assert mean_in > 1.5 * mean_out, (mean_in, mean_out, inside, outside)
    # and not only on average: most cases put more heat on the nodule than elsewhere
    assert sum(i > o for i, o in zip(inside, outside)) >= 0.7 * N_NODULE_CASES


def test_unknown_method_is_a_config_error(loaded):
    x = _model_input(loaded, _nodule_cases(1)[0])
    with pytest.raises(ConfigError, match="gradcam") as info:
        explain(loaded.model, loaded.cfg.model.name, x, 1, method="saliency")
    assert "saliency" in str(info.value)


def test_explain_does_not_change_the_weights(loaded):
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    x = _model_input(loaded, _nodule_cases(1)[0])
    explain(loaded.model, loaded.cfg.model.name, x, 1)
    after = loaded.model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_explain_leaves_an_eval_model_in_eval_mode():
    torch.manual_seed(0)
    model = build_model("simple-cnn", 1, 2, 2).eval()
    x = torch.rand(1, 32, 32)
    with torch.no_grad():
        before = model(x[None])
    explain(model, "simple-cnn", x, 1)
    assert not model.training
    with torch.no_grad():
        assert torch.allclose(model(x[None]), before, atol=1e-6)


def test_explain_does_not_leave_hooks_behind():
    model = build_model("simple-cnn", 1, 2, 2).eval()
    layer = dict(model.named_modules())[model_spec("simple-cnn").cam_layer]
    for _ in range(3):
        explain(model, "simple-cnn", torch.rand(1, 32, 32), 1)
    assert len(layer._forward_hooks) == 0
    assert len(layer._backward_hooks) == 0


_CRASH_SCRIPT = textwrap.dedent("""
    import torch
    from medsight.config import load_config
    from medsight.inference.explain import explain
    from medsight.models import build_model
    from medsight.runtime import Runtime

    cfg = load_config(None, ["model.name=resnet18-small", "model.options.width=8"])
    # as load_run sets the model up (precision, channels_last from the config defaults)
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last, 1, 2)
    torch.manual_seed(0)
    model = runtime.model(build_model(cfg.model.name, 1, 2, 2, **cfg.model.options), 2).eval()
    x = torch.rand(1, 64, 64)
    for _ in range(20):
        heat = explain(model, cfg.model.name, runtime.batch(x[None])[0], 1)
    print("ok", heat.shape)
""")


def test_gradcam_on_a_narrow_channels_last_resnet_does_not_crash():
    proc = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
    assert "ok (64, 64)" in proc.stdout


@pytest.mark.parametrize("method", list(METHODS))
def test_explain_leaves_nothing_alive(method):
    """MONAI's hook holder must not outlive the call (a service calls this millions of times).

    Its score keeps the autograd graph, whose backward-hook nodes point back at it: a cycle
    through C++ objects that Python's garbage collector cannot free (~0.3 MB per call).
    """
    import gc

    from monai.visualize.class_activation_maps import ModelWithHooks

    model = build_model("resnet18-small", 1, 2, 2, width=8).eval()
    for _ in range(3):
        explain(model, "resnet18-small", torch.randn(1, 32, 32), 1, method)
    gc.collect()
    assert sum(isinstance(o, ModelWithHooks) for o in gc.get_objects()) == 0
