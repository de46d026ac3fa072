"""Does reading from the on-disk cache keep the model step fed at full resolution?

    python bench/stream_rate.py [--images 600] [--px 1024] [--side 256] [--rounds 5] [--json OUT]

Writes ``--images`` grey PNG X-rays of ``--px``² (a pool of 50 distinct images, hard-linked
under distinct names), preprocesses them into the cache at ``--side`` px as the planner would
(aspect kept, 8-bit: uint8 on disk), and forces streaming (no in-memory copy of the split).
Then, alternating in one process and quoting medians:

  data      batches read from the cache and augmented, no model (images/s)
  trainer   medsight's training pass over the streamed split: reading ahead in a thread,
            batched augmentation, the step at the CPU's best precision (images/s)
  bare      the model step alone on one batch already in memory (images/s)

The target (issue 15): trainer >= 90% of bare at 256 px. The CPU kind is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def write_xrays(folder: Path, n: int, px: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    pool = []
    yy, xx = np.mgrid[:px, :px] / px
    for i in range(50):
        base = 90 + 40 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy) + rng.normal(0, 8, (px, px))
        if i % 2:
            cy, cx = rng.uniform(0.3, 0.7, 2)
            base += 70 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.004)
        path = folder / f"pool{i}.png"
        Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(path)
        pool.append(path)
    rows = ["path,label,patient_id"]
    for i in range(n):
        link = folder / f"xray{i:06d}.png"
        os.link(pool[i % 50], link)
        rows.append(f"{link.name},{'finding' if i % 2 else 'normal'},p{i}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--px", type=int, default=1024)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from medsight.config import config_from_dict
    from medsight.data import cache
    from medsight.data.prepared import prepare_data
    from medsight.data.registry import build_dataset
    from medsight.models import build_model
    from medsight.runtime import Runtime, cpu_description
    from medsight.training.classification import ClassificationTask, augmenter
    from medsight.training.trainer import Trainer, epoch_seed
    from throughput import bare_train

    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    manifest = write_xrays(work, args.images, args.px)
    cfg = config_from_dict({
        "data": {"dataset": "manifest", "path": str(manifest), "cache_dir": str(work / "cache")},
        "model": {"name": "resnet18", "spatial_dims": 2, "options": {"width": 16}},
        "transforms": {"intensity": "scale01", "intensity_range": [0, 255], "spatial_size": [args.side] * 2,
                       "resize": "fit",
                       "augment": {"rotate_degrees": 15, "flip": [0, 1], "zoom": 0.1, "contrast": 0.2, "prob": 0.5}},
        "train": {"epochs": 100, "batch_size": 64, "lr": 1e-3, "optimizer": "adamw", "schedule": "cosine",
                  "warmup_epochs": 0, "precise_bn_samples": 0},
    })
    cache.RAM_LIMIT_BYTES = 0  # stream every batch from disk, as a set larger than memory would
    t0 = time.perf_counter()
    prepared, _ = prepare_data(build_dataset(cfg.data, 0), cfg, ("train", "val"))
    prep_s = time.perf_counter() - t0
    train, val = prepared["train"], prepared["val"]
    assert not train.images.in_memory
    best = Runtime.create("auto")

    def fresh():
        torch.manual_seed(0)
        return best.model(build_model("resnet18", 1, 2, 2, width=16), 2)

    task = ClassificationTask(train, val, 2, 64, augmenter(cfg))
    trainer = Trainer(fresh(), task, cfg.train, work / "run", best, 2)
    bare_model = fresh()
    xb, yb = train.images[list(range(min(64, len(train))))], train.labels[:64]

    def data_only(epoch: int) -> float:
        t = time.perf_counter()
        n = sum(len(x) for x, _ in task.train_batches(epoch_seed(0, epoch)))
        return n / (time.perf_counter() - t)

    steps = max(1, len(train) // 64)
    bare_train(bare_model, best, xb, yb, 1)  # warm-up (oneDNN kernel choice)
    trainer.train_epoch(0)
    rates: dict[str, list[float]] = {"data": [], "trainer": [], "bare": []}
    for r in range(args.rounds):
        rates["data"].append(data_only(r + 1))
        rates["trainer"].append(trainer.train_epoch(r + 1)[1])
        rates["bare"].append(bare_train(bare_model, best, xb, yb, steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = cpu_description()
    print(f"\n{cpu['model']} ({'native bf16' if cpu['bf16_native'] else 'no native bf16'}), "
          f"{best.precision}, {best.threads} threads; {len(train)} training images {args.px}² -> "
          f"{args.side}² streamed from the cache ({prep_s:.0f} s to build, {args.images / prep_s:.1f} cases/s)")
    print(f"{'':10} {'img/s (median of ' + str(args.rounds) + ')':>24} {'x bare':>8}")
    for k in ("data", "trainer", "bare"):
        print(f"{k:10} {med[k]:>24.1f} {med[k] / med['bare']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu["model"], "precision": best.precision, "side": args.side,
                                         "img_s": med, "trainer_over_bare": med["trainer"] / med["bare"],
                                         "prep_cases_s": args.images / prep_s, "rounds": rates}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
