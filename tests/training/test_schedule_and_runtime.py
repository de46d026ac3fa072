import pytest
import torch

from medsight.config import TrainConfig
from medsight.training.optim import lr_factor
from medsight.training.runtime import Runtime


def test_warmup_then_cosine_to_zero():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    factors = [lr_factor(e, cfg) for e in range(10)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert factors[-1] < 0.05


def test_step_schedule():
    cfg = TrainConfig(epochs=30, schedule="step", step_size=10, gamma=0.1)
    assert [lr_factor(e, cfg) for e in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])


def test_runtime_fp32_has_no_autocast_and_channels_last_layout():
    rt = Runtime.create(precision="fp32", channels_last=True, threads=1)
    assert not rt.bf16 and rt.precision == "fp32"
    x = rt.batch(torch.zeros(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_runtime_bf16_autocast_uses_bfloat16():
    rt = Runtime.create(precision="bf16", threads=1)
    with rt.autocast():
        assert torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
