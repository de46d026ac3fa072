"""Minimal reproduction: fp32 backward through a channels-last 1x1 stride-2 convolution.

torch 2.13.0 (CPU, oneDNN AVX-512 kernels) corrupts the heap here: ``double free or
corruption`` or a segmentation fault within a few steps. On AVX2-only CPUs it does not crash
(``ONEDNN_MAX_CPU_ISA=AVX2`` shows it on an AVX-512 machine). ResNets hit it in the 1x1
stride-2 shortcut of each down-sampling block when 8 or fewer channels go in (narrow nets).

Because of it, ``medsight.runtime.Runtime`` keeps fp32 in the default memory layout (only bf16
uses channels-last). Run this after a torch upgrade; when it prints "fixed", that workaround
can go (``bench/train_speed.py`` then shows whether fp32 channels-last pays).

    python bench/onednn_channels_last_crash.py          # exit 0 = fixed, 1 = still crashes
"""

from __future__ import annotations

import subprocess
import sys

REPRO = """
import torch
conv = torch.nn.Conv2d(8, 16, kernel_size=1, stride=2).to(memory_format=torch.channels_last)
for _ in range(5):
    x = torch.rand(16, 8, 64, 64).to(memory_format=torch.channels_last).requires_grad_()
    conv(x).sum().backward()
print("ok")
"""


def still_crashes(timeout: float = 120.0) -> tuple[bool, str]:
    """Run the reproduction in a fresh process; (crashed, what happened)."""
    proc = subprocess.run([sys.executable, "-c", REPRO], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0 and "ok" in proc.stdout:
        return False, "ran 5 backward passes without error"
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return True, f"exit status {proc.returncode}: {tail}"


def main() -> int:
    import torch

    crashed, detail = still_crashes()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}: "
          f"{'still crashes' if crashed else 'fixed'} ({detail})")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
