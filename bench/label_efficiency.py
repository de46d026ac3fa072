"""Label efficiency (issue 17's proof): a self-supervised encoder against training from scratch
when only 10%, 25% or 100% of the training labels are used.

    python bench/label_efficiency.py [--datasets fundus-dr busi] [--fractions 0.1 0.25 1]
        [--seeds 0 1 2] [--inits pretrained scratch] [--minutes 3] [--pretrain-minutes 8] [--compute total|finetune]
        [--size 224] [--pretrain-size PX] [--batch 16] [--transfer] [--similar 5] [--quick] [--work DIR] [--json OUT] [--plot OUT.png]

Binary tasks, on the splits of the data sets' own benches (a set whose folder under
--data-root is absent is skipped with a message):

- fundus-dr: referable DR (moderate DR or worse, any maculopathy, or ADED) vs not, per eye,
  from bench/fundus.py's manifest (Patient299/300 as one patient), split as medsight splits it
  (70/15/15 by patient, stratified by the 10 classes, seed 0);
- busi: malignant vs benign, on bench/busi.py's split (by case, stratified by the 3 classes,
  seed 0), normal images left out.

Per data set:
1. Pretrain once (``medsight pretrain``: SimCLR) on the training split's images, labels unused,
   for --pretrain-minutes (90/10 of those patients for training / the contrastive val loss).
   No other images are added: ../shared/data's MedMNIST sets are 28-px copies (breastmnist is
   BUSI itself, test images included) and fundus-dr/originals repeats training images.
2. Per fraction and seed: a class-stratified subset of the training patients (whole patients;
   ``medsight.data.splits.label_subset``: nested, 10% inside 25%; a new draw per seed) with the
   full val split (checkpoint choice, the same for both arms) and the test
   split, trained from the pretrain run (init=pretrained: ``model.pretrained`` and the planner's
   fine-tuning defaults) and from random weights (init=scratch), with ``train.seed`` = seed.
3. Same total compute (--compute total, the default): scratch may train for the fine-tune
   budget plus the pretraining budget, the wall time that went into a pretrained model;
   --compute finetune gives both arms the fine-tune budget. Budgets are caps: the planner's
   200-epoch limit can end a small subset sooner (rows report the seconds trained).
4. AUC on the test split: mean and sd over seeds; the 95% CI is a percentile bootstrap over
   test cases (medsight.evaluation's resampling, 1000 draws) of the seed-mean AUC.

Every run of a data set uses one input size (--size: the long side in px; the median training
image's aspect ratio, rounded to 32 px as the planner does), so fine-tuning sees what the
encoder learnt on; --pretrain-size pretrains at another (the same network as the fine-tune
plan's at --size, so every encoder weight loads). --transfer adds, at the smallest fraction, the *other* data set's encoder
fine-tuned here (rows ``transfer_rows``, init ``transfer:<source>``).

--similar K (5 by default; 0 skips it): similar-case search with three encoders, the
self-supervised one (no labels), and scratch and pretrained after the largest fraction (first
seed). The training split is indexed (``medsight index``), each test image's K nearest cases
found, and the labels compared: top-1 agreement, the K neighbours' majority vote, their share
of the test image's label (P@K), and chance (two random cases of the sets agreeing); rows
``similar``.

--work DIR keeps manifests, runs and results (default: a temporary folder, deleted); a rerun
skips every run whose result JSON exists, so an interrupted bench resumes (an unfinished run
restarts). --json OUT: ``{"rows": [{"dataset", "fraction", "init", "auc", "auc_ci", "seeds",
...}], "verdicts", "transfer_rows", "pretrain", "cpu", ...}``. --quick: a smoke run (1 seed,
10% and 100%, budgets of 9-24 s, 64 px).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import busi  # noqa: E402
import fundus  # noqa: E402
import similar_agreement  # noqa: E402
from label_efficiency_stats import judged, summarise, verdicts  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data"
INITS = ("pretrained", "scratch")
QUICK = {"seeds": [0], "fractions": [0.1, 1.0], "minutes": 0.15, "pretrain_minutes": 0.25, "size": 64}


def referable(class_name: str) -> bool:
    """A fundus-dr class that is referred: moderate DR or worse, any maculopathy, or ADED (no grade)."""
    grade = fundus.grade_of(class_name)
    return grade is None or grade >= 2 or re.search(r"\bwith maculopathy", class_name) is not None


def fundus_cases(data: Path) -> list[dict]:
    """Eyes labelled referable / non-referable, with the split medsight makes of bench/fundus.py's manifest."""
    from medsight.data.manifest import encode_labels
    from medsight.data.splits import patient_split

    rows = fundus.read_rows(data)
    classes, _ = encode_labels([r["label"] for r in rows], data / "manifest.csv")
    splits = patient_split([r["patient_id"] for r in rows], classes, seed=0)
    return [{**r, "label": "referable" if referable(r["label"]) else "non-referable", "split": s}
            for r, s in zip(rows, splits)]


def busi_cases(data: Path) -> list[dict]:
    """Benign and malignant images on bench/busi.py's split (normal images left out)."""
    rows = busi.read_manifest(data)
    return [{"path": str((data / r["path"]).resolve()), "label": r["label"], "patient_id": r["patient_id"],
             "split": s} for r, s in zip(rows, busi.split_rows(rows)) if r["label"] != "normal"]


DATASETS = {"fundus-dr": fundus_cases, "busi": busi_cases}


def subset_cases(cases: list[dict], fraction: float, seed: int) -> list[dict]:
    """The training cases of a label subset, and every val and test case."""
    from medsight.data.splits import label_subset

    train = [c for c in cases if c["split"] == "train"]
    keep = iter(label_subset([c["patient_id"] for c in train], [c["label"] for c in train], fraction, seed))
    return [c for c in cases if c["split"] != "train" or next(keep)]  # next(): train cases, in order


def input_size(cases: list[dict], side: int) -> list[int]:
    """[H, W] with the median training image's aspect ratio, long side ``side``, multiples of 32."""
    from PIL import Image

    shapes = []
    for case in cases:
        if case["split"] == "train":
            with Image.open(case["path"]) as im:  # reads the header only
                shapes.append(im.size[::-1])
    median = np.median(np.array(shapes, dtype=float), axis=0)
    return [max(32, int(round(s * side / median.max() / 32)) * 32) for s in median]


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> Path:
    from medsight.utils.atomic import write_text

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())
    return path


def train(csv_path: Path, minutes: float, out: Path, sets: list[str]) -> float:
    """``medsight train --data CSV --minutes M --out RUN --set ...`` in this process, without the
    post-training calibration (temperature scaling leaves AUC unchanged); wall seconds."""
    from medsight.config import load_config
    from medsight.training.run import planned_overrides, train_run

    cfg = load_config(None, planned_overrides(csv_path, minutes) + sets)
    shutil.rmtree(out, ignore_errors=True)  # an unfinished run restarts
    t0 = time.perf_counter()
    train_run(cfg, out)
    return time.perf_counter() - t0


def pretrain_sets(cases: list[dict], side: int | None, size: list[int], sets: list[str]) -> list[str]:
    """The pretraining's overrides: the fine-tune input size, or ``side`` with the network the
    planner gives ``size`` (its width depends on the input size)."""
    from medsight.planning.classification import planned_model

    h, w = input_size(cases, side) if side else size
    model = [f"{k}={v}" for k, v in planned_model(size).items()] if side else []
    return [f"transforms.spatial_size=[{h},{w}]", "transforms.resize=fit", *model, *sets]


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def pretrain(work: Path, cases: list[dict], minutes: float, sets: list[str]) -> dict:
    """The data set's encoder (``medsight pretrain`` on the training images), reused when done."""
    from medsight.utils.atomic import write_json

    done, run = work / "results" / "pretrain.json", work / "runs" / "pretrain"
    if done.is_file():
        return json.loads(done.read_text())
    images = [c for c in cases if c["split"] == "train"]
    csv_path = write_csv(work / "pretrain.csv", images, ["path", "patient_id"])  # no labels
    seconds = train(csv_path, minutes, run, ["task=pretrain", "data.split_fractions=[0.9,0.1,0.0]", *sets])
    epochs = history(run)
    result = {"run": str(run.resolve()), "minutes": minutes, "seconds": round(seconds, 1), "images": len(images),
              "epochs": len(epochs), "val_loss_first": epochs[0]["val_loss"], "val_loss_last": epochs[-1]["val_loss"]}
    write_json(done, result)
    return result


def finetune(work: Path, name: str, cases: list[dict], minutes: float, sets: list[str]) -> dict:
    """Train on a label subset, evaluate on test; the result (with per-case probabilities) is kept."""
    from medsight.evaluation.evaluate import evaluate_run
    from medsight.utils.atomic import write_json

    done, run = work / "results" / f"{name}.json", work / "runs" / name
    if done.is_file():
        return json.loads(done.read_text())
    csv_path = write_csv(work / "manifests" / f"{name}.csv", cases, ["path", "label", "patient_id", "split"])
    seconds = train(csv_path, minutes, run, sets)
    metrics = evaluate_run(run, "test", out_dir=run, save_decision=False)
    with open(run / "cases_test.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    positive = f"p[{metrics['class_names'][1]}]"
    plan = json.loads((run / "plan.json").read_text())
    loaded = plan.get("pretrained")
    train_cases = [c for c in cases if c["split"] == "train"]
    result = {
        "auc": metrics["auc"], "auc_ci": metrics["ci"]["auc"], "minutes": minutes, "train_seconds": round(seconds, 1),
        "epochs": len(history(run)), "train_images": len(train_cases),
        "train_patients": len({c["patient_id"] for c in train_cases}),
        "loaded_tensors": loaded and loaded["n_loaded"], "loaded_weights": loaded and loaded["fraction"],
        "model": plan.get("planned", {}).get("model.name"), "input_shape": plan.get("input_shape"),
        "test": {"id": [r["id"] for r in rows], "label": [int(r["label"]) for r in rows],
                 "p": [float(r[positive]) for r in rows]},
    }
    write_json(done, result)
    return result


def print_table(result: dict) -> None:
    cpu = result["cpu"]
    print(f"\nLabel efficiency: test AUC, mean ± sd over seeds, 95% CI by case bootstrap of the seed mean; "
          f"CPU {cpu['model']}; fine-tune {result['minutes']:g} min, pretrain {result['pretrain_minutes']:g} min, "
          f"scratch {'fine-tune + pretrain' if result['compute'] == 'total' else 'fine-tune'} budget")
    print(f"{'dataset':<11}{'labels':>7} {'init':<20}{'AUC':>7} {'± sd':<8}{'95% CI':<17}{'train imgs':>11}"
          f"{'seeds':>7}{'s/run':>7}")
    for r in result["rows"] + result.get("transfer_rows", []):
        auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
        ci = "" if r["auc_ci"][0] is None else f"[{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]"
        print(f"{r['dataset']:<11}{r['fraction']:>7.0%} {r['init']:<20}{auc:>7} {r['auc_sd']:<8.3f}{ci:<17}"
              f"{round(np.mean(r['train_images'])):>11}{len(r['seeds']):>7}{np.mean(r['train_seconds']):>7.0f}")
    for name, p in result["pretrain"].items():
        print(f"pretrain {name}: {p['images']} images, {p['epochs']} epochs in {p['seconds']:.0f} s, "
              f"contrastive val loss {p['val_loss_first']:.3f} -> {p['val_loss_last']:.3f}")
    for v in result["verdicts"]:
        ci = v.get("gain_ci", [None, None])
        ci = "" if ci[0] is None else f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"
        seeds = v.get("gain_per_seed", {})
        meeting = "" if v["need"] is None else \
            f", {sum(g >= v['need'] for g in seeds.values())} of {len(seeds)} meeting it"
        seeds = f"; per seed {', '.join(f'{g:+.3f}' for g in seeds.values())}{meeting}" if seeds else ""
        kind = "gain" if v["need"] is None else "target"
        print(f"{kind} {v['dataset']} at {v['fraction']:.0%}: pretrained - scratch = {v['gain']:+.3f} AUC{ci}, "
              f"{judged(v)} (on the seed means{seeds})")
    if result.get("similar"):
        similar_agreement.print_rows(result["similar"])


def plot(rows: list[dict], out: Path) -> None:
    """AUC against the share of labels, a line per init, a panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medsight.utils.atomic import atomic_path

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for init in dict.fromkeys(r["init"] for r in rows):
            points = sorted((r["fraction"], r["auc"], r["auc_sd"]) for r in rows
                            if r["dataset"] == dataset and r["init"] == init and r["auc"] is not None)
            if points:
                x, y, sd = zip(*points)
                ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, label=init)
        fractions = sorted({r["fraction"] for r in rows if r["dataset"] == dataset})
        ax.set(xscale="log", title=dataset, xlabel="share of training labels", ylabel="test AUC")
        ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
        ax.minorticks_off()
        ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DATA_ROOT, help="folder holding fundus-dr/ and busi/")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.25, 1.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=3.0, help="fine-tuning budget per run")
    p.add_argument("--pretrain-minutes", type=float, default=8.0, help="pretraining budget per data set")
    p.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS),
                   help="the arms to run (a bench in parts: results are kept by name under --work)")
    p.add_argument("--compute", choices=["total", "finetune"], default="total",
                   help="scratch's budget: fine-tune + pretrain minutes (total) or fine-tune minutes")
    p.add_argument("--size", type=int, default=224, help="input long side in px, for every run")
    p.add_argument("--batch", type=int, default=16,
                   help="batch of the runs with labels (the planner's for 224 px, 64, is one step an epoch on 10%%)")
    p.add_argument("--pretrain-size", type=int, help="input long side for pretraining only (default: --size)")
    p.add_argument("--transfer", action="store_true", help="also fine-tune the other data set's encoder")
    p.add_argument("--quick", action="store_true", help="smoke run: " + json.dumps(QUICK))
    p.add_argument("--work", type=Path, help="runs and results, reused on rerun (default: a temporary folder)")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path, help="AUC vs fraction, PNG")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--similar", type=int, default=5, metavar="K",
                   help="similar-case search on the test split with K neighbours (0: skip)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if not all(0 < f <= 1 for f in args.fractions):
        p.error("--fractions must be in (0, 1]")

    present = [d for d in args.datasets if (args.data_root / d / "manifest.csv").is_file()]
    for d in sorted(set(args.datasets) - set(present)):
        print(f"{args.data_root / d}: {d} not found (no manifest.csv); skipping")
    if not present:
        return 0
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from medsight.runtime import cpu_description

    work = args.work or Path(tempfile.mkdtemp(prefix="medsight-label-efficiency-"))
    fractions = sorted(set(args.fractions))
    scratch_minutes = args.minutes + (args.pretrain_minutes if args.compute == "total" else 0.0)
    result = {"rows": [], "transfer_rows": [], "similar": [], "pretrain": {}, "minutes": args.minutes,
              "pretrain_minutes": args.pretrain_minutes, "compute": args.compute, "size": args.size, "batch": args.batch,
              "pretrain_size": args.pretrain_size or args.size,
              "val": "full val split for every fraction", "cpu": cpu_description()}
    try:
        cases, sets, tests = {}, {}, {}
        for d in present:  # every encoder first: --transfer uses the other's
            cases[d] = DATASETS[d]((args.data_root / d).resolve())
            h, w = input_size(cases[d], args.size)
            sets[d] = [f"transforms.spatial_size=[{h},{w}]", "transforms.resize=fit", *args.set]
            result["pretrain"][d] = pretrain(work / d, cases[d], args.pretrain_minutes,
                                             pretrain_sets(cases[d], args.pretrain_size, [h, w], args.set))
        for d in present:
            sets[d].insert(0, f"train.batch_size={args.batch}")  # the runs with labels; --set wins
            inits = {"pretrained": (args.minutes, [f"model.pretrained={result['pretrain'][d]['run']}"]),
                     "scratch": (scratch_minutes, [])}
            inits = {k: v for k, v in inits.items() if k in args.inits}
            transfer = {f"transfer:{o}": (args.minutes, [f"model.pretrained={result['pretrain'][o]['run']}"])
                        for o in present if args.transfer and o != d}
            for fraction in fractions:
                for init, (minutes, extra) in {**inits, **(transfer if fraction == fractions[0] else {})}.items():
                    runs = [finetune(work / d, f"{init.replace(':', '-')}-f{fraction:g}-s{seed}",
                                     subset_cases(cases[d], fraction, seed), minutes,
                                     [*sets[d], f"train.seed={seed}", *extra]) for seed in args.seeds]
                    row = summarise(d, fraction, init, args.seeds, runs)
                    tests[d, fraction, init] = (runs[0]["test"]["label"], [r["test"]["p"] for r in runs])
                    result["rows" if init in INITS else "transfer_rows"].append(row)
            if args.similar:  # the encoders, without labels and after the most labels, seed 0
                top = f"f{fractions[-1]:g}-s{args.seeds[0]}"
                encoders = {"self-supervised": Path(result["pretrain"][d]["run"]),
                            **{f"{init} {top}": work / d / "runs" / f"{init}-{top}" for init in INITS}}
                result["similar"] += [similar_agreement.retrieval(work / d, d, name, run, cases[d], args.similar)
                                      for name, run in encoders.items()]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["verdicts"] = verdicts(result["rows"], tests)
    print_table(result)
    if args.json:
        from medsight.utils.atomic import write_json

        write_json(args.json, result)
    if args.plot:
        plot(result["rows"] + result["transfer_rows"], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
