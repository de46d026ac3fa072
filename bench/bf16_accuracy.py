"""Does bf16 autocast cost accuracy? fp32 and bf16 trained side by side, seed by seed.

    python bench/bf16_accuracy.py [breastmnist retinamnist demo ...] [--seeds 0 1 2] [--json OUT]

For each data set and seed it trains the shipped config (``configs/<name>.yaml``; the demo's
built-in config for ``demo``) once per variant, alternating variants within a seed so that
machine noise falls on all alike, and evaluates on the official test split:

- ``fp32``: everything in fp32 (the AVX2 path);
- ``bf16``: bf16 autocast as medsight runs it (the last linear layer in fp32, runtime/mixed.py);
- ``bf16-all``: bf16 autocast everywhere, the last layer included (before runtime/mixed.py).

Prints test AUC and ACC per run and their means, with each variant's mean difference to fp32
and the training time; a bf16 variant is as accurate as fp32 when that difference is within
the seeds' spread. Needs a CPU with native bf16 (emulated bf16 is hundreds of times slower).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VARIANTS = ("fp32", "bf16", "bf16-all")


def config_for(name: str, seed: int):
    from medsight.config import load_config

    if name == "demo":
        from importlib.resources import files

        path = Path(str(files("medsight.resources") / "demo.yaml"))
        return load_config(path, [f"train.seed={seed}"])
    npz = DATA / name / f"{name}.npz"
    if not npz.is_file():
        return None
    return load_config(ROOT / "configs" / f"{name}.yaml",
                       ["data.dataset=medmnist", f"data.path={npz}", f"train.seed={seed}"])


def train_and_test(cfg, variant: str, tmp: Path) -> dict:
    from medsight.evaluation.calibrate import calibrate_run
    from medsight.evaluation.evaluate import evaluate_run
    from medsight.runtime import device
    from medsight.training.run import train_run

    os.environ[device.PRECISION_ENV] = "fp32" if variant == "fp32" else "bf16"
    device.FP32_HEAD = variant != "bf16-all"
    run_dir = tmp / f"{variant}-{cfg.train.seed}"
    t0 = time.perf_counter()
    train_run(cfg, run_dir, overwrite=True, calibrate=calibrate_run)
    seconds = time.perf_counter() - t0
    metrics = evaluate_run(run_dir, split="test", save_decision=False)
    return {"variant": variant, "seed": cfg.train.seed, "auc": metrics["auc"], "acc": metrics["accuracy"],
            "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", default=["breastmnist", "retinamnist", "demo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from medsight.runtime import cpu_description

    cpu = cpu_description()
    if not cpu["bf16_native"]:
        print(f"{cpu['model']}: no native bf16; bf16 would be emulated and very slow", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            for seed in args.seeds:
                cfg = config_for(name, seed)
                if cfg is None:
                    print(f"{name}: not in {DATA}; skipped", file=sys.stderr)
                    break
                # alternate the variants' order from seed to seed, so none always runs first
                order = args.variants if seed % 2 == 0 else list(reversed(args.variants))
                for variant in order:
                    row = {"dataset": name, **train_and_test(cfg, variant, Path(tmp))}
                    rows.append(row)
                    print(f"{name:<12} seed {seed} {variant:<9} AUC {row['auc']:.3f} ACC {row['acc']:.3f} "
                          f"({row['train_seconds']:.0f} s)", flush=True)
    print_summary(rows, args.variants, cpu)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=2) + "\n")
    return 0


def print_summary(rows: list[dict], variants: list[str], cpu: dict) -> None:
    print(f"\nmeans over seeds; {cpu['model']} (native bf16: {cpu['bf16_native']})")
    print(f"{'data set':<12} {'variant':<9} {'AUC':>6} {'sd':>6} {'ACC':>6} {'sd':>6} {'dAUC':>7} {'dACC':>7} "
          f"{'train s':>8}")
    for name in dict.fromkeys(r["dataset"] for r in rows):
        base = {r["seed"]: r for r in rows if r["dataset"] == name and r["variant"] == "fp32"}
        for variant in variants:
            runs = [r for r in rows if r["dataset"] == name and r["variant"] == variant]
            if not runs:
                continue
            auc, acc = [r["auc"] for r in runs], [r["acc"] for r in runs]
            paired = [r for r in runs if r["seed"] in base]
            d_auc = statistics.mean(r["auc"] - base[r["seed"]]["auc"] for r in paired) if paired else float("nan")
            d_acc = statistics.mean(r["acc"] - base[r["seed"]]["acc"] for r in paired) if paired else float("nan")
            sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
            print(f"{name:<12} {variant:<9} {statistics.mean(auc):>6.3f} {sd(auc):>6.3f} {statistics.mean(acc):>6.3f} "
                  f"{sd(acc):>6.3f} {d_auc:>+7.3f} {d_acc:>+7.3f} "
                  f"{statistics.median(r['train_seconds'] for r in runs):>8.0f}")


if __name__ == "__main__":
    sys.exit(main())
