"""Label efficiency for lesion segmentation (issue 17 on BUSI): a self-supervised encoder under a
U-Net decoder (or a self-supervised U-Net) against the same net from random weights, with a
share of the training masks.

    python bench/label_efficiency_seg.py [--fractions 0.1 1] [--seeds 0] [--minutes 5]
        [--pretrain-minutes 10] [--compute total|finetune] [--method simclr|restore] [--planned]
        [--quick] [--work DIR] [--json OUT]

``--method restore`` pretrains the planner's DynUNet whole (``pretrain.method=restore``: it
restores cut-out and shuffled images) and fine-tunes that same planned net, every layer but
the output from pretraining; steps 1-2 below describe the default, ``simclr``.

On bench/busi.py's split (by case, stratified by benign/malignant/normal, seed 0), normal
images (empty masks) included as in bench/busi.py:

1. Pretrain once: ``medsight pretrain`` (SimCLR) of an EfficientNet-B0 classifier on the
   training images, masks and labels unused, at the segmentation grid's size (160x192, the
   image fitted whole: what the planner's 3x coarser grid gives a BUSI image).
2. Per fraction and seed: a class-stratified subset of the training images (bench/
   label_efficiency.py's ``subset_cases``: nested, a new draw per seed) with the full val and
   test splits, trained as MONAI's FlexibleUNet (a U-Net decoder on EfficientNet-B0) from that
   encoder (init=pretrained, the planner's fine-tuning defaults) and from random weights
   (init=scratch). Every run uses the same grid (``transforms.spacing=[3,3]``, patch
   160x192), so the encoder sees the scale it learnt on.
3. Same total compute (--compute total, the default): scratch trains for the fine-tune budget
   plus the pretraining budget. --planned adds medsight's planned default (DynUNet, its own
   grid) from scratch on the scratch budget, as a reference (init=planned).
4. Dice and HD95 of the lesion class on the test images with a lesion, as bench/busi.py
   reports them (with mirror TTA, as planned); the 95% CI is a percentile bootstrap over those
   images of the per-image Dice averaged over seeds.

--work DIR keeps manifests, runs and results; a rerun skips every run whose result exists.
--json OUT: ``{"rows": [{"dataset", "task": "segmentation", "fraction", "init", "dice",
"dice_ci", "seeds", ...}], "verdicts", "pretrain", "cpu", ...}``. The verdicts are issue 17's
targets read for Dice: +0.05 at the smallest fraction if it is at most 10%, no worse (-0.01)
at 100%, the gain alone at any other fraction.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import busi  # noqa: E402
import label_efficiency as le  # noqa: E402
from label_efficiency_stats import judged  # noqa: E402
from label_efficiency_stats import verdicts as shared_verdicts  # noqa: E402

GRID = ["transforms.spacing=[3.0,3.0]", "segmentation.patch_size=[160,192]"]
ENCODER = "efficientnet-b0"  # FlexibleUNet's default backbone, under the same names
FIT = ["transforms.spatial_size=[160,192]", "transforms.resize=fit"]
# per --method: the pretraining's settings, and the net each arm trains (simclr: FlexibleUNet on
# the encoder; restore: the planner's DynUNet, whose every layer but the output was pretrained)
METHODS = {
    "simclr": {"pretrain": [f"model.name={ENCODER}", *FIT],
               "inits": {"pretrained": ["model.name=flexunet"], "scratch": ["model.name=flexunet"], "planned": []}},
    "restore": {"pretrain": ["pretrain.method=restore", *FIT],
                "inits": {"pretrained": [], "scratch": []}},
}
QUICK = {"seeds": [0], "fractions": [0.1, 1.0], "minutes": 0.15, "pretrain_minutes": 0.2}


def busi_seg_cases(data: Path) -> list[dict]:
    """Every BUSI image with its mask, class label (for stratified subsets) and split."""
    rows = busi.read_manifest(data)
    return [{"path": str((data / r["path"]).resolve()), "mask": str((data / r["mask"]).resolve()),
             "label": r["label"], "patient_id": r["patient_id"], "split": s}
            for r, s in zip(rows, busi.split_rows(rows))]


def finetune(work: Path, name: str, cases: list[dict], minutes: float, sets: list[str]) -> dict:
    """Train on a mask subset, evaluate on test; per-image lesion Dice kept for the seed-mean CI."""
    from medsight.evaluation.evaluate import evaluate_run
    from medsight.runtime.run_folder import read_config
    from medsight.utils.atomic import write_json

    done, run = work / "results" / f"{name}.json", work / "runs" / name
    if done.is_file():
        return json.loads(done.read_text())
    csv_path = le.write_csv(work / "manifests" / f"{name}.csv", cases, ["path", "mask", "patient_id", "split"])
    seconds = le.train(csv_path, minutes, run, sets)
    evaluate_run(run, "test", out_dir=run)
    labels = {c["path"]: c["label"] for c in cases}
    figures = busi.lesion_figures(run, labels)
    _, kept, lesion = busi.lesion_cases(run, labels)
    plan = json.loads((run / "plan.json").read_text())
    loaded = plan.get("pretrained")
    result = {**figures, "minutes": minutes, "train_seconds": round(seconds, 1), "epochs": len(le.history(run)),
              "train_images": sum(c["split"] == "train" for c in cases),
              "loaded_weights": loaded and loaded["fraction"], "model": read_config(run).model.name,
              "patch": plan.get("input_shape"), "spacing": plan["planned"].get("transforms.spacing"),
              "test": {"case": [r["case"] for r in kept], "dice": [float(r[f"{lesion}_dice"]) for r in kept]}}
    write_json(done, result)
    return result


def summarise(fraction: float, init: str, seeds: list[int], results: list[dict]) -> dict:
    """One row: Dice per seed, mean, sd, and the bootstrap CI of the seed-mean per-image Dice."""
    cases = results[0]["test"]["case"]
    if any(r["test"]["case"] != cases for r in results):
        raise RuntimeError("the runs were tested on different cases")
    per_image = np.mean([r["test"]["dice"] for r in results], axis=0)
    dice = [r["dice"] for r in results]
    return {"dataset": "busi", "task": "segmentation", "fraction": fraction, "init": init, "seeds": seeds,
            "dice": round(float(np.mean(dice)), 4), "dice_sd": round(float(np.std(dice, ddof=1)), 4) if len(dice) > 1
            else 0.0, "dice_ci": busi.bootstrap_mean(per_image), "dice_per_seed": dice,
            "hd95": round(float(np.mean([r["hd95_mm"] for r in results if r["hd95_mm"] is not None])), 1),
            "missed": [r["missed_lesions"] for r in results], "test_lesion_images": len(cases),
            "train_images": results[0]["train_images"], "minutes": results[0]["minutes"],
            "train_seconds": [r["train_seconds"] for r in results], "epochs": [r["epochs"] for r in results],
            "loaded_weights": results[0]["loaded_weights"], "model": results[0]["model"],
            "patch": results[0]["patch"], "spacing": results[0]["spacing"]}


def verdicts(rows: list[dict]) -> list[dict]:
    """Issue 17's targets read for Dice: +0.05 at 10%, no worse at 100% (the AUC bench's rule)."""
    return shared_verdicts(rows, metric="dice")


def print_table(result: dict) -> None:
    print(f"\nBUSI lesion segmentation, label efficiency: test Dice on images with a lesion, mean ± sd over "
          f"seeds, 95% CI by image bootstrap of the seed mean; CPU {result['cpu']['model']}; fine-tune "
          f"{result['minutes']:g} min, pretrain {result['pretrain_minutes']:g} min, scratch "
          f"{'fine-tune + pretrain' if result['compute'] == 'total' else 'fine-tune'} budget")
    print(f"{'labels':>7} {'init':<11}{'model':<11}{'Dice':>7} {'± sd':<7}{'95% CI':<17}{'HD95 px':>8}"
          f"{'missed':>7}{'train imgs':>11}{'epochs':>7}{'s/run':>7}")
    for r in result["rows"]:
        print(f"{r['fraction']:>7.0%} {r['init']:<11}{r['model']:<11}{r['dice']:>7.3f} "
              f"{r['dice_sd']:<7.3f}{busi._ci(r['dice_ci']):<17}{r['hd95']:>8.1f}{np.mean(r['missed']):>7.1f}"
              f"{r['train_images']:>11}{np.mean(r['epochs']):>7.0f}{np.mean(r['train_seconds']):>7.0f}")
    p = result["pretrain"]
    print(f"pretrain ({result.get('method', 'simclr')}): {p['images']} images, {p['epochs']} epochs in "
          f"{p['seconds']:.0f} s, val loss "
          f"{p['val_loss_first']:.3f} -> {p['val_loss_last']:.3f}")
    for v in result["verdicts"]:
        kind = "gain" if v["need"] is None else "target"
        print(f"{kind} at {v['fraction']:.0%}: pretrained - scratch = {v['gain']:+.3f} Dice, {judged(v)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=busi.DEFAULT_DATA)
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 1.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--minutes", type=float, default=5.0, help="fine-tuning budget per run")
    p.add_argument("--pretrain-minutes", type=float, default=10.0)
    p.add_argument("--compute", choices=["total", "finetune"], default="total",
                   help="scratch's budget: fine-tune + pretrain minutes (total) or fine-tune minutes")
    p.add_argument("--method", choices=sorted(METHODS), default="simclr",
                   help="simclr: an EfficientNet-B0 encoder under FlexibleUNet; restore: the planned DynUNet, "
                        "encoder and decoder (runs under WORK/restore)")
    p.add_argument("--planned", action="store_true", help="also the planned default (DynUNet) from scratch "
                   "(simclr; with restore both arms are the planned net)")
    p.add_argument("--quick", action="store_true", help="smoke run: " + json.dumps(QUICK))
    p.add_argument("--work", type=Path, help="runs and results, reused on rerun (default: a temporary folder)")
    p.add_argument("--json", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if not all(0 < f <= 1 for f in args.fractions):
        p.error("--fractions must be in (0, 1]")
    if not (args.data / "manifest.csv").is_file():
        print(f"{args.data}: BUSI not found (no manifest.csv); skipping")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from medsight.runtime import cpu_description

    top = args.work or Path(tempfile.mkdtemp(prefix="medsight-label-efficiency-seg-"))
    work = top / "restore" if args.method == "restore" else top  # simclr keeps its earlier layout
    method = METHODS[args.method]
    scratch_minutes = args.minutes + (args.pretrain_minutes if args.compute == "total" else 0.0)
    result = {"rows": [], "minutes": args.minutes, "pretrain_minutes": args.pretrain_minutes,
              "compute": args.compute, "method": args.method,
              "encoder": ENCODER if args.method == "simclr" else "dynunet", "cpu": cpu_description()}
    try:
        cases = busi_seg_cases(args.data.resolve())
        result["pretrain"] = le.pretrain(work, cases, args.pretrain_minutes, [*method["pretrain"], *args.set])
        inits = {"pretrained": (args.minutes, [*GRID, f"model.pretrained={result['pretrain']['run']}"]),
                 "scratch": (scratch_minutes, GRID), "planned": (scratch_minutes, [])}
        for fraction in sorted(set(args.fractions)):
            for init, (minutes, extra) in inits.items():
                if init not in method["inits"] or init == "planned" and not args.planned:
                    continue
                runs = [finetune(work, f"{init}-f{fraction:g}-s{seed}", le.subset_cases(cases, fraction, seed),
                                 minutes, [*method["inits"][init], *extra, f"train.seed={seed}", *args.set])
                        for seed in args.seeds]
                result["rows"].append(summarise(fraction, init, args.seeds, runs))
    finally:
        if args.work is None:
            shutil.rmtree(top, ignore_errors=True)
    result["verdicts"] = verdicts(result["rows"])
    print_table(result)
    if args.json:
        from medsight.utils.atomic import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
