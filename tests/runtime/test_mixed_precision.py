"""The classifier's last layer stays fp32 under bf16 autocast; the rest runs in bf16."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from medsight.models import build_model
from medsight.models.heads import last_linear
from medsight.runtime import Runtime
from medsight.runtime.mixed import keep_head_fp32


def _model():
    torch.manual_seed(0)
    return build_model("resnet18-small", 1, 3, 2, width=8).eval()


def test_the_head_runs_in_fp32_and_the_convolutions_in_bf16():
    model = keep_head_fp32(_model())
    seen = {}
    model.fc.register_forward_hook(lambda m, i, o: seen.update(fc_in=i[0], fc_out=o))
    model.conv1.register_forward_hook(lambda m, i, o: seen.update(conv=o))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 1, 32, 32))
    assert seen["conv"].dtype == torch.bfloat16  # the bulk of the compute keeps its speed
    assert out.dtype == torch.float32
    # the scores are the fp32 linear map of the (bf16) features: no rounding after it
    expected = F.linear(seen["fc_in"].float(), model.fc.weight, model.fc.bias)
    assert torch.equal(out, expected)


def test_without_autocast_nothing_changes_and_the_keys_stay():
    plain = _model()
    kept = keep_head_fp32(copy.deepcopy(plain))
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(plain(x), kept(x))
    assert list(kept.state_dict()) == list(plain.state_dict())
    kept.load_state_dict(plain.state_dict())  # checkpoints of either load into the other
    clone = copy.deepcopy(kept)
    assert type(clone.fc) is type(kept.fc) and isinstance(clone.fc, torch.nn.Linear)
    assert keep_head_fp32(kept).fc is kept.fc  # idempotent


def test_the_last_linear_is_the_classifier_of_every_registered_classifier():
    for name in ("simple-cnn", "resnet18-small", "densenet121"):
        model = build_model(name, 1, 5, 2, width=8) if name.startswith("resnet") else build_model(name, 1, 5, 2)
        assert last_linear(model)[1].out_features == 5


@pytest.mark.parametrize("bf16", [True, False])
def test_the_runtime_keeps_the_head_fp32_only_under_bf16(bf16):
    rt = Runtime(torch.device("cpu"), bf16, False, 1)
    model = rt.model(_model(), 2)
    assert (type(model.fc).__name__ == "Fp32Linear") is bf16
