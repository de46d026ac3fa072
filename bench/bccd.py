"""Train a box detector on BCCD and report VOC AP@0.5 per class on the official test list.

    python bench/bccd.py [--data ../shared/data/bccd] [--minutes M | --epochs N] [--json OUT]

Trains with ``configs/bccd.yaml`` on ``ImageSets/Main/train.txt``, keeps the epoch with the best
validation mAP (``val.txt``), evaluates it on ``test.txt`` and prints AP@0.5 per class, the mAP,
the training time and the CPU kind. ``--minutes`` sets the number of epochs from a timed probe
of a few training batches on this machine (the schedule needs the count up front).
There is no canonical published benchmark for BCCD; YOLO / Faster R-CNN write-ups quote
roughly mAP@0.5 0.85-0.9 (WBC ~0.97, RBC ~0.8, Platelets ~0.8) with ImageNet-pretrained
backbones; this trains from scratch on a CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bccd"
TYPICAL = {"RBC": 0.8, "WBC": 0.97, "Platelets": 0.8, "mAP": 0.87}  # rough, not a canonical benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="VOC folder (default: %(default)s)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "bccd.yaml")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="training time budget; sets the number of epochs")
    budget.add_argument("--epochs", type=int, help="number of epochs (default: the config's)")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--out", type=Path, help="keep the run folder here (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from medsight.config import load_config
    from medsight.evaluation.detection_run import evaluate_detection
    from medsight.runtime import cpu_description
    from medsight.training.run import train_run

    if not (args.data / "Annotations").is_dir():
        print(f"{args.data}: not a VOC folder (no Annotations/)", file=sys.stderr)
        return 2
    cfg = load_config(args.config, [f"data.path={args.data.resolve()}", *args.set])
    if args.epochs:
        cfg.train.epochs = args.epochs
    elif args.minutes:
        cfg.train.epochs = epochs_for(cfg, args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or Path(tmp) / "run"
        t0, cpu0 = time.perf_counter(), time.process_time()
        train_run(cfg, run_dir, overwrite=True)
        train_seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
        metrics = evaluate_detection(run_dir, split="test")
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["val_map"] if not math.isnan(r["val_map"]) else -1)
    result = {"ap50": metrics["ap"], "map50": metrics["map"], "train_seconds": round(train_seconds, 1),
              "train_cpu_seconds": round(cpu_seconds, 1),
              "epochs": cfg.train.epochs, "best_epoch": best["epoch"], "val_map50": best["val_map"],
              "n_test_images": metrics["n_images"], "cpu": cpu_description(), "model": cfg.model.name,
              "scale": cfg.detection.scale, "data": args.data.name}
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def epochs_for(cfg, minutes: float) -> int:
    """Epochs that fit ``minutes`` here: a few timed training steps and one validation pass."""
    import torch

    from medsight.runtime import Runtime
    from medsight.training.detection import build_detection, detection_config, load_voc
    from medsight.training.optim import make_optimizer

    cfg = detection_config(cfg)
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last, cfg.train.threads, 2)
    model, task, _ = build_detection(cfg, load_voc(cfg), runtime)
    model = runtime.model(model, 2)
    optimizer = make_optimizer(model, cfg.train)
    batches = (batch for seed in range(4) for batch in task.train_batches(seed))  # enough for a tiny set
    times = []
    for _ in range(4):  # the first is warm-up
        t0 = time.perf_counter()
        x, y = next(batches)
        with runtime.autocast():
            loss = task.loss(model(runtime.batch(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    task.validate(model, runtime)
    per_epoch = min(times[1:]) * math.ceil(len(task.train) / cfg.train.batch_size) + time.perf_counter() - t0
    torch.manual_seed(cfg.train.seed)
    # 10% kept for what the probe does not see: reading the data, checkpoints, the test run
    epochs = max(1, int(0.9 * minutes * 60 / per_epoch))
    logging.info("probe: %.1f s per epoch -> %d epochs in %g minutes", per_epoch, epochs, minutes)
    return epochs


def print_table(result: dict) -> None:
    cpu = result["cpu"]
    print(f"\n{result['data']}: test list ({result['n_test_images']} images), VOC AP@0.5, {result['model']} "
          f"at scale {result['scale']:g}, from scratch")
    print(f"trained {result['epochs']} epochs in {result['train_seconds']:.0f} s wall, "
          f"{result['train_cpu_seconds']:.0f} s CPU (best val mAP "
          f"{result['val_map50']:.3f} at epoch {result['best_epoch']}) on {cpu['model']}, "
          f"native bf16: {'yes' if cpu['bf16_native'] else 'no'}")
    print(f"{'class':<10} {'medsight':>9} {'typical*':>9}")
    for name, ap in result["ap50"].items():
        print(f"{name:<10} {ap:>9.3f} {TYPICAL.get(name, float('nan')):>9.2f}")
    print(f"{'mAP':<10} {result['map50']:>9.3f} {TYPICAL['mAP']:>9.2f}")
    print("* rough figures quoted for ImageNet-pretrained YOLO / Faster R-CNN on BCCD; no canonical benchmark")


if __name__ == "__main__":
    sys.exit(main())
