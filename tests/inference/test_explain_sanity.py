"""Occlusion sensitivity maps, and the model-randomisation sanity check of Adebayo et al. (2018,
"Sanity checks for saliency maps"): an explanation that barely changes when the trained weights
are replaced by random ones explains the image, not the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from medsight.inference.explain import METHODS, explain
from medsight.inference.load import load_run
from medsight.models import build_model
from tests.inference.test_explain import _model_input, _nodule_cases

N_CASES = 4


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_run(trained_run, prefer_onnx=False)


@pytest.fixture(scope="module")
def random_model(loaded):
    """The same architecture with fresh random weights (and fresh BatchNorm statistics)."""
    torch.manual_seed(1234)
    plan = loaded.plan
    return build_model(loaded.cfg.model.name, plan["in_channels"], len(plan["class_names"]),
                       plan["spatial_dims"], **loaded.cfg.model.options).eval()


@pytest.mark.parametrize("dims, shape", [(2, (28, 28)), (2, (40, 56)), (3, (16, 16, 20))])
def test_occlusion_maps_have_the_image_shape_and_unit_range(dims, shape):
    torch.manual_seed(0)
    model = build_model("simple-cnn", 1, 3, dims).eval()
    x = torch.rand(1, *shape)
    heat = explain(model, "simple-cnn", x, 2, "occlusion")
    assert heat.shape == shape and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert not model.training


def test_occlusion_heat_sits_on_the_nodules(loaded):
    """Hiding the nodule lowers the nodule score more than hiding anything else."""
    inside, outside = [], []
    for item in _nodule_cases(6):
        heat = explain(loaded.model, loaded.cfg.model.name, _model_input(loaded, item), 1, "occlusion")
        assert heat.max() == pytest.approx(1.0)
        mask = item["mask"][0].numpy() > 0
        inside.append(heat[mask].mean())
        outside.append(heat[~mask].mean())
    assert np.mean(inside) > 2 * np.mean(outside), (inside, outside)


# Grad-CAM++ fails the check on the demo-like classifier: mean |rho| 0.61 (0.52-0.73 over the
# cases; bf16, AMD EPYC Zen 4) - its maps follow the bright nodule whatever the weights.
# Kept as an expected failure so the finding stays visible and a fix shows up as XPASS.
GRADCAM_PP_FAILS = pytest.mark.xfail(reason="Grad-CAM++ maps stay rank-correlated (~0.6) with a "
                                     "randomised model's on this data", strict=False)


@pytest.mark.parametrize("method", [pytest.param(m, marks=GRADCAM_PP_FAILS) if m == "gradcam++" else m
                                    for m in METHODS])
def test_heatmaps_change_when_the_trained_weights_are_randomised(loaded, random_model, method):
    """Rank correlation between the trained and the randomised model's maps stays below 0.5."""
    name = loaded.cfg.model.name
    correlations = []
    for item in _nodule_cases(N_CASES):
        x = _model_input(loaded, item)
        trained = explain(loaded.model, name, x, 1, method)
        randomised = explain(random_model, name, x, 1, method)
        assert trained.std() > 0.01  # the trained model's map has content to compare
        # a constant map (all zero: the random net sees nothing) shares no ranking at all
        rho = 0.0 if randomised.std() == 0 else spearmanr(trained.ravel(), randomised.ravel())[0]
        correlations.append(abs(rho))
    assert np.mean(correlations) < 0.5, (method, correlations)
