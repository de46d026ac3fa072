"""Training throughput of the model step by precision and memory layout, alternated in one process.

Variants: fp32; bf16 autocast and bf16 + channels-last (only on CPUs with native bf16, where
they are not emulated); fp32 + channels-last only where it does not crash
(``bench/onednn_channels_last_crash.py``: it does on AVX-512 in torch 2.13; to measure the
AVX2 path on an AVX-512 machine run with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``).

    python bench/train_speed.py [--model resnet18-small] [--size 28] [--batch 64] [--rounds 5]

The machine is noisy, so the variants run in turns (A, B, C, A, B, C, ...) and the table
reports median images/s per variant and the ratio to fp32 measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from medsight.models import build_model
from medsight.runtime import Runtime, cpu_description

VARIANTS = {  # (bf16, channels_last)
    "fp32": (False, False),
    "fp32 + channels-last": (False, True),
    "bf16": (True, False),
    "bf16 + channels-last": (True, True),
}


def usable_variants() -> dict[str, tuple[bool, bool]]:
    from onednn_channels_last_crash import still_crashes

    cpu = cpu_description()
    out = {}
    for name, (bf16, cl) in VARIANTS.items():
        if bf16 and not cpu["bf16_native"]:
            continue  # emulated bf16: hundreds of times slower, never chosen by `auto`
        if cl and not bf16 and still_crashes()[0]:
            print(f"skipping {name}: crashes in this torch/CPU (bench/onednn_channels_last_crash.py)")
            continue
        out[name] = (bf16, cl)
    return out


def steps_per_second(model, runtime: Runtime, x, y, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with runtime.autocast():
            out = model(runtime.batch(x))
        F.cross_entropy(out.float(), y).backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18-small")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    x = torch.rand(args.batch, args.channels, args.size, args.size)
    y = torch.randint(0, 2, (args.batch,))
    models = {}
    variants = usable_variants()
    for name, (bf16, cl) in variants.items():
        rt = Runtime(torch.device("cpu"), bf16, cl, torch.get_num_threads())
        torch.manual_seed(0)
        m = rt.model(build_model(args.model, args.channels, 2, 2), 2)
        steps_per_second(m, rt, x, y, 2)  # warm-up (oneDNN kernel selection)
        models[name] = (m, rt)
    rates: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(args.rounds):
        for name, (m, rt) in models.items():
            rates[name].append(steps_per_second(m, rt, x, y, args.steps))
    base = statistics.median(rates["fp32"])
    cpu = cpu_description()
    print(f"\n{cpu['model']} (native bf16: {cpu['bf16_native']}, torch CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()})")
    print(f"{args.model} {args.size}x{args.size}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'variant':<24} {'img/s':>8} {'vs fp32':>8}")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"{name:<24} {med:>8.0f} {med / base:>7.2f}x")


if __name__ == "__main__":
    main()
