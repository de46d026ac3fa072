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
infer (images/s), on the model the trainer just trained
  plain     model.eval(), torch.no_grad(), fp32, a DataLoader with per-sample normalisation
  medsight  the engine predict uses by default after ``medsight export`` on this CPU, from the
            same uint8 images (batched normalisation): the fastest of PyTorch (fp32, and bf16
            where native), ONNX Runtime and OpenVINO that changes no validation decision of fp32
            PyTorch's (inference/engine_choice.py); ``infer_img_s.engine`` names it. Every
            engine is listed beside it with the decisions it changed, int8 (``--quantize
            int8``) too

The variants alternate (A, B, C, A, B, C, ...) and the table gives medians, because this
machine's speed varies by +-30% from run to run. The CPU kind is printed with the figures.
"""

from __future__ import annotations

import argparse
import copy
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


def inference_engines(model, best, x_all: torch.Tensor, tmp: Path) -> dict:
    """Every engine medsight may choose for ``model`` on this CPU, by engine_choice.py's names."""
    from medsight.inference.engine import OnnxEngine, OpenVinoEngine
    from medsight.inference.export import quantize_onnx_int8
    from medsight.runtime import Runtime
    from medsight.runtime.engine import TorchEngine
    from medsight.utils.extras import available

    onnx_path, int8_path = tmp / "model.onnx", tmp / "model.int8.onnx"
    torch.onnx.export(model, (x_all[:2],), onnx_path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}}, opset_version=17, dynamo=False)
    quantize_onnx_int8(onnx_path, int8_path, x_all[:256].numpy())
    fp32 = Runtime.create("fp32", threads=best.threads)
    engines = {"pytorch-fp32": TorchEngine(copy.deepcopy(model), fp32)}
    if best.bf16:
        engines["pytorch-bf16"] = TorchEngine(best.model(copy.deepcopy(model), 2), best)
    engines["onnxruntime"] = OnnxEngine(onnx_path, best.threads)
    if available("openvino"):
        engines[f"openvino-{best.precision}"] = OpenVinoEngine(onnx_path, best.threads, best.bf16)
    engines["onnxruntime-int8"] = OnnxEngine(int8_path, best.threads, "onnxruntime-int8")
    return engines


def decision_changes(engines: dict, x: torch.Tensor) -> dict[str, int]:
    """Per engine, the validation images whose predicted class differs from fp32 PyTorch's."""
    from medsight.runtime.engine import run_batches

    reference = run_batches(engines["pytorch-fp32"], x).argmax(1)
    return {n: int((run_batches(e, x).argmax(1) != reference).sum()) for n, e in engines.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "breastmnist.yaml")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from medsight.config import load_config
    from medsight.data.prepared import PreparedSplit
    from medsight.models import build_model
    from medsight.runtime import Runtime, cpu_description
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
    rates: dict[str, list[float]] = {k: [] for k in ("plain", "medsight", "bare", "extra", "data")}
    for r in range(args.rounds):
        rates["plain"].append(plain_train(plain_model, plain_loader, steps))
        rate, extra = medsight_epoch_parts(r + 1)
        rates["medsight"].append(rate)
        rates["extra"].append(extra)
        rates["bare"].append(bare_train(bare_model, best, xb, yb, steps))
        rates["data"].append(batches_only(r + 1))
        print(f"train round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}

    # Inference, on the model medsight just trained (a few epochs: decisions are not coin flips).
    model = copy.deepcopy(trainer.model).float().to(memory_format=torch.contiguous_format).eval()
    engines = inference_engines(model, best, x_all, Path(tmp.name))
    infer_loader = torch.utils.data.DataLoader(PlainDataset(images, labels), batch_size=64)
    plain_infer(model, infer_loader)
    for engine in engines.values():
        medsight_infer(engine, images)
    irates: dict[str, list[float]] = {k: [] for k in ["plain", *engines]}
    for r in range(args.rounds):
        irates["plain"].append(plain_infer(model, infer_loader))
        for name, engine in engines.items():
            irates[name].append(medsight_infer(engine, images))
        print(f"inference round {r + 1}/{args.rounds} done", file=sys.stderr)
    imed = {k: round(statistics.median(v), 1) for k, v in irates.items()}
    flips = decision_changes(engines, x_all[:n_val])
    # predict's default after `medsight export`: the fastest engine that changes no validation
    # decision (inference/engine_choice.py); int8 needs `--quantize int8`, so it is shown beside
    default = max((n for n in engines if n != "onnxruntime-int8" and flips[n] == 0), key=lambda n: imed[n])
    cpu = cpu_description()
    result = {"cpu": {"bf16_native": cpu["bf16_native"], "model": cpu["model"], "kind": cpu["kind"],
                      "torch_capability": torch.backends.cpu.get_cpu_capability()},
              "precision": best.precision, "threads": best.threads, "data": source,
              "model": f"{name} {opts}", "batch_size": bs,
              "train_img_s": {"plain": round(med["plain"], 1), "medsight": round(med["medsight"], 1),
                              "bare": round(med["bare"], 1)},
              "epoch_extras_share": round(med["extra"], 3),
              "batching_augmentation_img_s": round(med["data"], 1),
              "infer_img_s": {"plain": imed["plain"], "medsight": imed[default], "engine": default,
                              "medsight_pytorch": imed[f"pytorch-{best.precision}"],
                              "medsight_onnxruntime": imed["onnxruntime"],
                              "medsight_int8": imed["onnxruntime-int8"],
                              "engines": {n: imed[n] for n in engines}},
              "decisions_changed_on_val": flips, "val_images": n_val}
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
    print(f"{'':<10}{'medsight (default: ' + i['engine'] + ')':<34}{i['medsight']:>9.0f}"
          f"{i['medsight'] / i['plain']:>9.2f}x")
    for name, rate in i["engines"].items():
        changed = r["decisions_changed_on_val"][name]
        print(f"{'':<12}{name:<32}{rate:>9.0f}{rate / i['plain']:>9.2f}x   "
              f"{changed} of {r['val_images']} val decisions changed")


if __name__ == "__main__":
    sys.exit(main())
