import pytest
import torch

from medsight.config import TrainConfig
from medsight.runtime import Runtime
from medsight.training.optim import lr_factor


def test_warmup_then_cosine_to_zero():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    factors = [lr_factor(e, cfg) for e in range(10)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert factors[-1] < 0.05


def test_step_schedule():
    cfg = TrainConfig(epochs=30, schedule="step", step_size=10, gamma=0.1)
    assert [lr_factor(e, cfg) for e in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])


def test_runtime_fp32_has_no_autocast_and_keeps_the_default_layout():
    # fp32 backward through channels-last oneDNN convolutions crashes in torch 2.13 CPU
    rt = Runtime.create(precision="fp32", channels_last=True, threads=1)
    assert not rt.bf16 and rt.precision == "fp32" and not rt.channels_last
    assert rt.batch(torch.zeros(2, 3, 8, 8)).is_contiguous()
    with rt.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_runtime_bf16_autocast_uses_bfloat16_and_channels_last():
    rt = Runtime.create(precision="bf16", channels_last=True, threads=1)
    assert rt.channels_last
    assert rt.batch(torch.zeros(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert rt.batch(torch.zeros(2, 3, 4, 8, 8)).is_contiguous(memory_format=torch.channels_last_3d)
    with rt.autocast():
        assert torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16


def test_fp32_training_of_a_narrow_resnet_does_not_crash(tmp_path):
    import subprocess
    import sys

    script = (
        "import torch, torch.nn.functional as F\n"
        "from medsight.models import build_model\n"
        "from medsight.runtime import Runtime\n"
        "rt = Runtime.create(precision='fp32', channels_last=True, threads=2)\n"
        "m = rt.model(build_model('resnet18-small', 1, 2, 2, width=8), 2)\n"
        "for _ in range(3):\n"
        "    F.cross_entropy(m(rt.batch(torch.rand(16, 1, 64, 64))), torch.randint(0, 2, (16,))).backward()\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-500:]
