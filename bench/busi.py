"""BUSI breast ultrasound: lesion segmentation and 3-class classification beside published figures.

    python bench/busi.py [--data ../shared/data/busi] [--minutes 30] [--cls-minutes 10]
                         [--work DIR] [--json OUT] [--set KEY=VALUE ...]

Skips (exit 0) when the data folder is absent. From ``busi/manifest.csv``
(``path,mask,label,patient_id``) it writes two manifests with absolute paths into ``--work``
(default: a temporary folder, deleted at the end; a given ``--work`` is kept):

- ``segmentation.csv``: ``path,mask,patient_id,split``, all 780 images (normal ones with empty
  masks included) for lesion segmentation;
- ``classification.csv``: ``path,label,patient_id,split``, benign / malignant / normal.

Both carry the same ``split`` column, made by medsight's own ``patient_split`` (70/15/15,
stratified by the class label, seed 0), so the two tasks are tested on the same images and the
segmentation test split holds lesions in the data set's proportion. BUSI has no patient IDs
(a split by case is a split by image; several images may come from one woman, which published
random splits share). The exact duplicate ``benign_433`` / ``malignant_145`` gets one patient
ID, so the pair never straddles train and test.

Each task is trained with the planned defaults (``medsight train --data CSV --minutes M --out
RUN``, no tuning) and evaluated with ``medsight evaluate RUN --split test``. Segmentation figures
are Dice and HD95 of the lesion class over the test images **with a lesion** (benign and
malignant), as the published figures are, from the per-case ``cases_test.csv``, with a 95%
percentile-bootstrap CI over cases; the figures over all test images (normal ones included,
where an empty prediction of an empty mask scores Dice 1) are those of ``metrics.json``. BUSI
images carry no pixel spacing, so HD95 is in pixels (medsight reads 1 mm per pixel).
Classification figures are AUC (one-vs-rest macro) and accuracy with the CIs of
``metrics.json``. ``--set`` passes config overrides to both trainings (for smoke tests: a
planned segmentation epoch is 25-250 steps whatever the budget, so e.g.
``--set segmentation.iterations_per_epoch=5`` keeps a smoke run short).
``--json OUT`` writes ``{"dice", "hd95_mm", "auc", "acc", "train_seconds", ...}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "busi"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import medsight  # noqa: E402

DUPLICATE = ("benign_433", "malignant_145")  # the same image under two labels (PROVENANCE.md)

# Dice on BUSI lesion images (../shared/docs/BENCHMARKS.md)
DICE_ANCHORS = [
    ("BUS-Set best of 9 (Mask R-CNN), 5-fold CV, 4 sets", 0.851, "Thomas et al., Med. Phys. 2023"),
    ("plain U-Net baselines on BUSI (various papers)", 0.76, "about 0.70-0.76"),
]
# No 3-class BUSI figure in BENCHMARKS.md; the nearest published figure is a different task:
CLS_CONTEXT = ("BreastMNIST ResNet-18 (28 px), binary", 0.901, 0.863,
               "malignant vs benign+normal at 28x28 (MedMNIST v2): another task, for context only")


def read_manifest(data: Path) -> list[dict]:
    with open(data / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["patient_id"] in DUPLICATE:
            row["patient_id"] = "+".join(DUPLICATE)
    return rows


def split_rows(rows: list[dict]) -> list[str]:
    """Each row's split: medsight's ``patient_split`` (70/15/15, stratified by the 3 classes, seed 0)."""
    from medsight.data.splits import patient_split

    return patient_split([r["patient_id"] for r in rows], [r["label"] for r in rows], seed=0)


def write_manifests(data: Path, rows: list[dict], work: Path) -> tuple[Path, Path, dict[str, str]]:
    """The two manifests (absolute paths, shared split) and each image path's label."""
    splits = split_rows(rows)
    seg, cls = work / "segmentation.csv", work / "classification.csv"
    labels = {}
    with open(seg, "w", newline="") as fs, open(cls, "w", newline="") as fc:
        ws, wc = csv.writer(fs), csv.writer(fc)
        ws.writerow(["path", "mask", "patient_id", "split"])
        wc.writerow(["path", "label", "patient_id", "split"])
        for row, split in zip(rows, splits):
            path, mask = str((data / row["path"]).resolve()), str((data / row["mask"]).resolve())
            ws.writerow([path, mask, row["patient_id"], split])
            wc.writerow([path, row["label"], row["patient_id"], split])
            labels[path] = row["label"]
    return seg, cls, labels


def bootstrap_mean(values: np.ndarray, n: int = 1000, seed: int = 0) -> list[float | None]:
    """95% percentile-bootstrap interval of the mean over cases."""
    if len(values) == 0:
        return [None, None]
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))
    means = values[idx].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def lesion_cases(run: Path, labels: dict[str, str]) -> tuple[list[dict], list[dict], str]:
    """The rows of cases_test.csv: all of them, those with a lesion (benign, malignant), and
    the lesion class's name."""
    metrics = json.loads((run / "metrics.json").read_text())
    lesion = metrics["class_names"][1]
    with open(run / "cases_test.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    unmatched = [r["case"] for r in rows if r["case"] not in labels]
    if unmatched:
        raise RuntimeError(f"cases_test.csv: {len(unmatched)} cases not in the manifest, e.g. {unmatched[0]}")
    return rows, [r for r in rows if labels[r["case"]] in ("benign", "malignant")], lesion


def lesion_figures(run: Path, labels: dict[str, str]) -> dict:
    """Dice and HD95 of the lesion class on the test images with a lesion (cases_test.csv)."""
    rows, kept, lesion = lesion_cases(run, labels)
    dice = np.array([float(r[f"{lesion}_dice"]) for r in kept])
    hd = np.array([float(r[f"{lesion}_hd95_mm"]) for r in kept if r[f"{lesion}_hd95_mm"] != ""])
    metrics = json.loads((run / "metrics.json").read_text())
    per_class = metrics["summary"]["per_class"][lesion]
    return {
        "dice": round(float(dice.mean()), 4), "dice_ci": bootstrap_mean(dice),
        "dice_median": round(float(np.median(dice)), 4),
        "hd95_mm": round(float(hd.mean()), 2) if len(hd) else None, "hd95_ci": bootstrap_mean(hd),
        "hd95_median": round(float(np.median(hd)), 2) if len(hd) else None,
        "test_lesion_images": len(kept), "missed_lesions": int((dice == 0).sum()),
        "hd95_cases": len(hd),  # HD95 is undefined where the prediction is empty
        "test_images": len(rows),
        "dice_all_test": per_class["dice"]["mean"], "dice_all_test_ci": per_class["dice"]["ci"],
        "hd95_all_test": per_class["hd95_mm"]["mean"], "hd95_all_test_ci": per_class["hd95_mm"]["ci"],
        "lesion_class": lesion,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--minutes", type=float, default=30.0, help="segmentation training budget")
    p.add_argument("--cls-minutes", type=float, default=10.0, help="classification training budget")
    p.add_argument("--work", type=Path, help="manifests, runs and cache (default: a temporary folder)")
    p.add_argument("--json", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both trainings (smoke tests; the figures use none)")
    args = p.parse_args(argv)
    sets = [x for item in args.set for x in ("--set", item)]

    if not (args.data / "manifest.csv").is_file():
        print(f"{args.data}: BUSI not found (no manifest.csv); skipping")
        return 0
    from medsight.runtime import cpu_description

    data = args.data.resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix="medsight-busi-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        seg_csv, cls_csv, labels = write_manifests(data, read_manifest(data), work)
        seg_run, cls_run = work / "run-segmentation", work / "run-classification"
        seg_s = medsight("train", "--data", str(seg_csv), "--minutes", f"{args.minutes:g}", "--out", str(seg_run),
                         *sets)
        medsight("evaluate", str(seg_run), "--split", "test")
        cls_s = medsight("train", "--data", str(cls_csv), "--minutes", f"{args.cls_minutes:g}", "--out", str(cls_run),
                         *sets)
        medsight("evaluate", str(cls_run), "--split", "test")
        seg = lesion_figures(seg_run, labels)
        cls = json.loads((cls_run / "metrics.json").read_text())
        seg_plan = json.loads((seg_run / "plan.json").read_text())
        cls_plan = json.loads((cls_run / "plan.json").read_text())
        seg_epochs = sum(1 for line in (seg_run / "metrics.jsonl").read_text().splitlines() if line.strip())
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        **seg,
        "auc": round(cls["auc"], 4), "auc_ci": cls["ci"]["auc"],
        "acc": round(cls["accuracy"], 4), "acc_ci": cls["ci"]["accuracy"],
        "cls_test_images": cls["n"], "cls_per_class": cls.get("per_class"),
        "confusion_matrix": cls.get("confusion_matrix"), "class_names": cls.get("class_names"),
        "train_seconds": round(seg_s + cls_s, 1),
        "seg_train_seconds": round(seg_s, 1), "cls_train_seconds": round(cls_s, 1),
        "seg_minutes": args.minutes, "cls_minutes": args.cls_minutes,
        "seg_patch_size": seg_plan.get("input_shape"), "cls_input_shape": cls_plan.get("input_shape"),
        "seg_epochs": seg_epochs, "split": "by case (no patient IDs), 70/15/15 stratified",
        "cpu": cpu_description(), "overrides": args.set,
    }
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _ci(ci: list | None, digits: int = 3) -> str:
    if not ci or ci[0] is None:
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def print_table(r: dict) -> None:
    cpu = r["cpu"]
    print(f"\nBUSI, test split ({r['test_images']} images, {r['test_lesion_images']} with a lesion); "
          f"split by case. CPU: {cpu['model']} (native bf16: {cpu['bf16_native']})")
    print(f"Lesion segmentation: planned default, {r['seg_minutes']:g} min budget, trained "
          f"{r['seg_train_seconds']:.0f} s, patch {r['seg_patch_size']}")
    print(f"{'':<52}{'Dice':>7}  {'95% CI':<17}{'HD95 px':>9}  {'95% CI':<17}")
    print(f"{'medsight, test images with a lesion':<52}{r['dice']:>7.3f}  {_ci(r['dice_ci']):<17}"
          f"{_num(r['hd95_mm']):>9}  {_ci(r['hd95_ci'], 1):<17}")
    print(f"{'medsight, all test images (normal included)':<52}{r['dice_all_test']:>7.3f}  "
          f"{_ci(r['dice_all_test_ci']):<17}{_num(r['hd95_all_test']):>9}  {_ci(r['hd95_all_test_ci'], 1):<17}")
    for name, dice, note in DICE_ANCHORS:
        print(f"{name:<52}{dice:>7.3f}  ({note})")
    print(f"({r['missed_lesions']} lesion images with an empty prediction (Dice 0, no HD95); HD95 over "
          f"{r['hd95_cases']} images; BUSI has no pixel spacing, so HD95 is in pixels)")
    print(f"\n3-class classification (benign/malignant/normal): planned default, {r['cls_minutes']:g} min "
          f"budget, trained {r['cls_train_seconds']:.0f} s, input {r['cls_input_shape']}")
    print(f"{'':<52}{'AUC':>7}  {'95% CI':<17}{'ACC':>9}  {'95% CI':<17}")
    print(f"{'medsight':<52}{r['auc']:>7.3f}  {_ci(r['auc_ci']):<17}{r['acc']:>9.3f}  {_ci(r['acc_ci']):<17}")
    name, auc, acc, note = CLS_CONTEXT
    print(f"{name:<52}{auc:>7.3f}  {'':<17}{acc:>9.3f}  ({note})")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


if __name__ == "__main__":
    sys.exit(main())
