"""Training and inference throughput: a plain PyTorch loop, medsight, and the bare model step.

    python bench/throughput.py [--config configs/breastmnist.yaml] [--rounds 5] [--json OUT]

On the model and data of the config (BreastMNIST from ../shared/data when present, else
random 28x28 images of the same count), in one process:

train (images/s)
  plain     the loop people write: a Dataset applying MONAI's per-sample augmentation, a
            DataLoader, fp32, Adam, cross-entropy; no tricks
  medsight  the Trainer's training pass: batching, batched augmentation, the step at the
            CPU's best precision, progress bar; epoch extras (BatchNorm re-estimation,
            validation) are timed separately and shown as a share of the epoch
  bare      the model step alone at the best precision on one batch already in memory
infer (images/s)
  plain     model.eval(), torch.no_grad(), fp32, a DataLoader with per-sample normalisation
  medsight  the engine predict uses, from the same uint8 images (batched normalisation),
            after ``medsight export`` (ONNX Runtime, fp32); the PyTorch engine and the int8
            export (``--quantize int8``) are shown beside it

The variants alternate (A, B, C, A, B, C, ...) and the table gives medians, because this
machine's speed varies by +-30% from run to run. The CPU kind is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def load_arrays(cfg) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Training images and labels, the validation-split size, and where they came from."""
    path = cfg.data.path
    if path is not None and Path(path).is_file():
        with np.load(path) as z:
            return (z["train_images"], z["train_labels"].reshape(-1).astype(np.int64), len(z["val_labels"]),
                    Path(path).name)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (546, 28, 28), dtype=np.uint8), rng.integers(0, 2, 546), 78, "random 28x28"


class PlainDataset(torch.utils.data.Dataset):
    """Per-sample: to float in [0, 1], channel first, then MONAI's random transforms."""

    def __init__(self, images, labels, augment=None):
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = torch.as_tensor(self.images[i], dtype=torch.float32)[None] / 255.0
        if self.augment is not None:
            x = torch.as_tensor(self.augment({"image": x})["image"])
        return x, int(self.labels[i])


def plain_train(model, loader, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    seen, t0 = 0, time.perf_counter()
    while seen < steps * loader.batch_size:
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            seen += len(x)
            if seen >= steps * loader.batch_size:
                break
    return seen / (time.perf_counter() - t0)


def bare_train(model, runtime, x, y, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    xb = runtime.batch(x)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with runtime.autocast():
            out = model(xb)
        F.cross_entropy(out.float(), y).backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - t0)


@torch.no_grad()
def plain_infer(model, loader) -> float:
    model.eval()
    n, t0 = 0, time.perf_counter()
    for x, _ in loader:
        model(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def medsight_infer(engine, images_u8: np.ndarray) -> float:
    from medsight.runtime.engine import run_batches

    t0 = time.perf_counter()
    x = torch.from_numpy(images_u8).float().div_(255.0)[:, None]  # batched normalisation
    run_batches(engine, x)
    return len(images_u8) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "breastmnist.yaml")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from medsight.config import load_config
    from medsight.data.prepared import PreparedSplit
    from medsight.inference.engine import OnnxEngine
    from medsight.inference.export import quantize_onnx_int8
    from medsight.models import build_model
    from medsight.runtime import Runtime, cpu_description
    from medsight.runtime.engine import TorchEngine
    from medsight.training.batchnorm import recalibrate_batchnorm
    from medsight.training.classification import ClassificationTask, augmenter
    from medsight.training.trainer import Trainer, epoch_seed
    from medsight.transforms import augmentation

    cfg = load_config(args.config, ["model.spatial_dims=2"])  # 2D MedMNIST; the planner is not run here
    images, labels, n_val, source = load_arrays(cfg)
    bs, name, opts = cfg.train.batch_size, cfg.model.name, cfg.model.options
    n_classes = int(labels.max()) + 1
    best = Runtime.create("auto")

    def fresh(rt):
        torch.manual_seed(0)
        return rt.model(build_model(name, 1, n_classes, 2, **opts), 2)

    # (a) plain loop
    plain_model = build_model(name, 1, n_classes, 2, **opts)
    mon = augmentation(cfg.transforms, 2)
    plain_loader = torch.utils.data.DataLoader(PlainDataset(images, labels, mon), batch_size=bs, shuffle=True)
    # (b) medsight's trainer on the same data
    x_all = torch.from_numpy(images).float().div(255.0)[:, None]
    y_all = torch.from_numpy(labels)
    split = PreparedSplit(x_all, y_all, [str(i) for i in range(len(y_all))], [""] * len(y_all))
    val = PreparedSplit(x_all[:n_val], y_all[:n_val], split.ids[:n_val], split.sources[:n_val])
    task = ClassificationTask(split, val, n_classes, bs, augmenter(cfg))
    tmp = tempfile.TemporaryDirectory()
    trainer = Trainer(fresh(best), task, cfg.train, Path(tmp.name), best, 2)
    # (c) bare step
    bare_model = fresh(best)
    xb, yb = x_all[:bs].contiguous(), y_all[:bs]
    # inference
    infer_loader = torch.utils.data.DataLoader(PlainDataset(images, labels), batch_size=64)
    onnx_path = Path(tmp.name) / "model.onnx"
    plain_model.eval()
    torch.onnx.export(plain_model, (xb[:2],), onnx_path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}}, opset_version=17, dynamo=False)
    onnx = OnnxEngine(onnx_path, best.threads)
    int8_path = Path(tmp.name) / "model.int8.onnx"
    quantize_onnx_int8(onnx_path, int8_path, x_all[:256].numpy())
    int8 = OnnxEngine(int8_path, best.threads)
    torch_engine = TorchEngine(fresh(best).eval(), best)

    def batches_only(epoch: int) -> float:
        """Batching + augmentation alone (what the trainer does besides the model step)."""
        t0 = time.perf_counter()
        n = sum(len(x) for x, _ in task.train_batches(epoch_seed(0, epoch)))
        return n / (time.perf_counter() - t0)

    def medsight_epoch_parts(epoch: int) -> tuple[float, float]:
        _, rate = trainer.train_epoch(epoch)
        t0 = time.perf_counter()
        recalibrate_batchnorm(trainer.model, task.norm_batches(epoch_seed(0, epoch), cfg.train.precise_bn_samples),
                              best)
        task.validate(trainer.model, best)
        extra = time.perf_counter() - t0
        return rate, extra / (len(y_all) / rate + extra)

    steps = max(1, min(args.steps, len(images) // bs))
    plain_train(plain_model, plain_loader, 1)  # warm-ups (oneDNN kernel choice)
    bare_train(bare_model, best, xb, yb, 2)
    medsight_epoch_parts(0)
    plain_infer(plain_model, infer_loader)
    medsight_infer(onnx, images)
    medsight_infer(torch_engine, images)
    medsight_infer(int8, images)
    rates: dict[str, list[float]] = {k: [] for k in ("plain", "medsight", "bare", "extra", "iplain", "ionnx",
                                                      "itorch", "iint8", "data")}
    for r in range(args.rounds):
        rates["plain"].append(plain_train(plain_model, plain_loader, steps))
        rate, extra = medsight_epoch_parts(r + 1)
        rates["medsight"].append(rate)
        rates["extra"].append(extra)
        rates["bare"].append(bare_train(bare_model, best, xb, yb, steps))
        rates["data"].append(batches_only(r + 1))
        rates["iplain"].append(plain_infer(plain_model, infer_loader))
        rates["ionnx"].append(medsight_infer(onnx, images))
        rates["itorch"].append(medsight_infer(torch_engine, images))
        rates["iint8"].append(medsight_infer(int8, images))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = cpu_description()
    result = {"cpu": {"bf16_native": cpu["bf16_native"], "model": cpu["model"],
                      "torch_capability": torch.backends.cpu.get_cpu_capability()},
              "precision": best.precision, "threads": best.threads, "data": source,
              "model": f"{name} {opts}", "batch_size": bs,
              "train_img_s": {"plain": round(med["plain"], 1), "medsight": round(med["medsight"], 1),
                              "bare": round(med["bare"], 1)},
              "epoch_extras_share": round(med["extra"], 3),
              "batching_augmentation_img_s": round(med["data"], 1),
              "infer_img_s": {"plain": round(med["iplain"], 1), "medsight": round(med["ionnx"], 1),
                              "medsight_pytorch": round(med["itorch"], 1),
                              "medsight_int8": round(med["iint8"], 1)}}
    print_table(result, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    tmp.cleanup()
    return 0


def print_table(r: dict, rounds: int) -> None:
    t, i = r["train_img_s"], r["infer_img_s"]
    print(f"\n{r['cpu']['model']} (native bf16: {r['cpu']['bf16_native']}, {r['cpu']['torch_capability']}); "
          f"best precision {r['precision']}, {r['threads']} threads")
    print(f"{r['model']}, batch {r['batch_size']}, data: {r['data']}; median of {rounds} alternating rounds\n")
    print(f"{'':<10}{'variant':<34}{'img/s':>9}{'vs plain':>10}{'vs bare':>9}")
    print(f"{'train':<10}{'plain PyTorch loop (fp32)':<34}{t['plain']:>9.0f}{1:>9.2f}x{t['plain'] / t['bare']:>8.0%}")
    print(f"{'':<10}{'medsight trainer':<34}{t['medsight']:>9.0f}{t['medsight'] / t['plain']:>9.2f}x"
          f"{t['medsight'] / t['bare']:>8.0%}")
    print(f"{'':<10}{'bare model step':<34}{t['bare']:>9.0f}{t['bare'] / t['plain']:>9.2f}x{1:>8.0%}")
    print(f"{'':<10}(batching + augmentation alone: {r['batching_augmentation_img_s']:.0f} img/s, "
          f"{t['medsight'] / r['batching_augmentation_img_s']:.1%} of the training pass;")
    print(f"{'':<10} BatchNorm re-estimation + validation: {r['epoch_extras_share']:.0%} of a medsight epoch)")
    print(f"{'infer':<10}{'plain PyTorch loop (fp32)':<34}{i['plain']:>9.0f}{1:>9.2f}x")
    print(f"{'':<10}{'medsight (ONNX Runtime)':<34}{i['medsight']:>9.0f}{i['medsight'] / i['plain']:>9.2f}x")
    print(f"{'':<10}{'medsight (PyTorch engine)':<34}{i['medsight_pytorch']:>9.0f}"
          f"{i['medsight_pytorch'] / i['plain']:>9.2f}x")
    print(f"{'':<10}{'medsight (ONNX Runtime, int8)':<34}{i['medsight_int8']:>9.0f}"
          f"{i['medsight_int8'] / i['plain']:>9.2f}x")


if __name__ == "__main__":
    sys.exit(main())
