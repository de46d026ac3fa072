"""Colour fundus, 10 classes of diabetic retinopathy and maculopathy: AUC, accuracy and DR kappa.

    python bench/fundus.py [--data ../shared/data/fundus-dr] [--minutes 10] [--compare-128]
                           [--work DIR] [--json OUT] [--set KEY=VALUE ...]

Skips (exit 0) when the data folder is absent. Writes a manifest ``path,label,patient_id``
(absolute paths) from ``fundus-dr/manifest.csv`` into ``--work`` (default: a temporary folder,
deleted at the end; a given ``--work`` is kept). medsight splits a manifest by ``patient_id``
(70/15/15, stratified), so both eyes of a patient stay in one split; Patient299 and Patient300,
possibly one person (PROVENANCE.md), get one patient ID.

Trains the planned default on the 10 classes (``medsight train --data CSV --minutes M --out
RUN``, no tuning: the planner picks the input size for the 1024x685 images from the budget),
evaluates with ``medsight evaluate RUN --split test`` and reports:

- AUC (one-vs-rest, macro) and accuracy over the 10 classes, with the CIs of ``metrics.json``
  (medsight leaves the AUC undefined, null, when a class has no test eye, as the rarest classes
  may not; ``auc_present`` is then the same macro AUC over the classes present in the test split,
  computed here from ``cases_test.csv`` with a patient bootstrap CI);
- quadratic-weighted Cohen's kappa on the 5-grade DR scale (No DR 0, Mild 1, Moderate 2,
  Severe 3, PDR 4; with and without maculopathy map to the same grade), from the per-case
  probabilities in ``cases_test.csv``. The predicted grade is that of the most probable of the
  nine graded classes. ADED (advanced diabetic eye disease) has no grade: ADED test eyes are
  left out of kappa (their number is reported, as is the number of kept eyes whose top class
  was ADED). The 95% CI is a percentile bootstrap over patients (both eyes resampled together,
  1000 resamples).

``--compare-128`` repeats the run with ``--set transforms.spatial_size=[128,128]`` to show what
the planned resolution buys. ``--json OUT`` writes ``{"auc", "acc", "kappa", "train_seconds",
...}`` (with ``--compare-128`` the second run's figures under ``"at_128"``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fundus-dr"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import medsight  # noqa: E402

SAME_PERSON = ("Patient299", "Patient300")  # one ID number in the source metadata (PROVENANCE.md)
# class number (the label's leading number) -> International Clinical DR grade; 10 (ADED): none
GRADE = {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4, 9: 4, 10: None}


def grade_of(class_name: str) -> int | None:
    match = re.match(r"\s*(\d+)", class_name)
    if not match or int(match.group(1)) not in GRADE:
        raise ValueError(f"unknown fundus-dr class {class_name!r}")
    return GRADE[int(match.group(1))]


def read_rows(data: Path) -> list[dict[str, str]]:
    """``path`` (absolute), ``label`` and ``patient_id`` (Patient299 and Patient300 as one) per eye."""
    with open(data / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{"path": str((data / row["path"]).resolve()), "label": row["label"],
             "patient_id": "+".join(SAME_PERSON) if row["patient_id"] in SAME_PERSON else row["patient_id"]}
            for row in rows]


def write_manifest(data: Path, work: Path) -> tuple[Path, dict[str, str]]:
    """The manifest with absolute paths, and each path's patient ID."""
    rows = read_rows(data)
    out = work / "fundus-dr.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return out, {row["path"]: row["patient_id"] for row in rows}


def dr_kappa(cases_csv: Path, patients: dict[str, str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Quadratic-weighted kappa on the 5 DR grades (ADED left out), with a patient bootstrap CI."""
    from sklearn.metrics import cohen_kappa_score

    with open(cases_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in rows[0] if c.startswith("p[") and c.endswith("]")]
    names = [c[2:-1] for c in columns]  # the model's class order; labels index it
    grades = [grade_of(n) for n in names]
    graded = [i for i, g in enumerate(grades) if g is not None]
    y_true, y_pred, groups, aded_true, aded_top = [], [], [], 0, 0
    for row in rows:
        true = grades[int(row["label"])]
        if true is None:
            aded_true += 1
            continue
        probs = np.array([float(row[c]) for c in columns])
        aded_top += int(grades[int(probs.argmax())] is None)
        y_true.append(true)
        y_pred.append(grades[graded[int(probs[graded].argmax())]])
        groups.append(patients.get(row["id"], row["id"]))
    y_true_a, y_pred_a = np.array(y_true), np.array(y_pred)
    labels = list(range(5))
    kappa = float(cohen_kappa_score(y_true_a, y_pred_a, weights="quadratic", labels=labels))
    # bootstrap over patients: both eyes of a patient are drawn together
    ids = sorted(set(groups))
    members = {p: np.flatnonzero(np.array(groups) == p) for p in ids}
    rng, boot = np.random.default_rng(seed), []
    for _ in range(n_boot):
        idx = np.concatenate([members[ids[j]] for j in rng.integers(0, len(ids), len(ids))])
        if len(np.unique(y_true_a[idx])) < 2:
            continue
        value = cohen_kappa_score(y_true_a[idx], y_pred_a[idx], weights="quadratic", labels=labels)
        if np.isfinite(value):
            boot.append(value)
    ci = [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)] if boot \
        else [None, None]
    return {"kappa": round(kappa, 4), "kappa_ci": ci, "kappa_eyes": len(y_true), "kappa_patients": len(ids),
            "aded_test_eyes_left_out": aded_true, "kept_eyes_with_aded_top1": aded_top,
            "grade_accuracy": round(float((y_true_a == y_pred_a).mean()), 4)}


def auc_present(cases_csv: Path, patients: dict[str, str], n_boot: int = 1000, seed: int = 0) -> dict:
    """One-vs-rest macro AUC over the classes present in the test split (medsight's ``auc`` is
    undefined when a class is absent), with a patient bootstrap CI."""
    from sklearn.metrics import roc_auc_score

    with open(cases_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in rows[0] if c.startswith("p[") and c.endswith("]")]
    y = np.array([int(r["label"]) for r in rows])
    probs = np.array([[float(r[c]) for c in columns] for r in rows])
    groups = np.array([patients.get(r["id"], r["id"]) for r in rows])

    def macro(idx: np.ndarray) -> float | None:
        present = [k for k in np.unique(y) if 0 < (y[idx] == k).sum() < len(idx)]
        if not present:
            return None
        return float(np.mean([roc_auc_score(y[idx] == k, probs[idx, k]) for k in present]))

    point = macro(np.arange(len(y)))
    ids = sorted(set(groups.tolist()))
    members = {p: np.flatnonzero(groups == p) for p in ids}
    rng, boot = np.random.default_rng(seed), []
    for _ in range(n_boot):
        value = macro(np.concatenate([members[ids[j]] for j in rng.integers(0, len(ids), len(ids))]))
        if value is not None:
            boot.append(value)
    ci = [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)] if boot \
        else [None, None]
    missing = [columns[k][2:-1] for k in range(len(columns)) if not (y == k).any()]
    return {"auc_present": None if point is None else round(point, 4), "auc_present_ci": ci,
            "classes_absent_from_test": missing}


def one_run(csv_path: Path, run: Path, minutes: float, patients: dict[str, str], extra: list[str]) -> dict:
    train_s = medsight("train", "--data", str(csv_path), "--minutes", f"{minutes:g}", "--out", str(run), *extra)
    medsight("evaluate", str(run), "--split", "test")
    metrics = json.loads((run / "metrics.json").read_text())
    plan = json.loads((run / "plan.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "auc": _r(metrics["auc"]), "auc_ci": metrics["ci"]["auc"],
        **auc_present(run / "cases_test.csv", patients),
        "acc": _r(metrics["accuracy"]), "acc_ci": metrics["ci"]["accuracy"],
        **dr_kappa(run / "cases_test.csv", patients),
        "train_seconds": round(train_s, 1), "minutes": minutes, "test_eyes": metrics["n"],
        "input_shape": plan.get("input_shape"), "model": plan.get("planned", {}).get("model.name"),
        "epochs": len(epochs), "overrides": extra,
        "n_per_class_test": metrics.get("n_per_class"),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    p.add_argument("--compare-128", action="store_true", help="repeat at 128x128 input")
    p.add_argument("--work", type=Path, help="manifest, runs and cache (default: a temporary folder)")
    p.add_argument("--json", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every training (smoke tests; the figures use none)")
    args = p.parse_args(argv)
    sets = [x for item in args.set for x in ("--set", item)]

    if not (args.data / "manifest.csv").is_file():
        print(f"{args.data}: fundus-dr not found (no manifest.csv); skipping")
        return 0
    from medsight.runtime import cpu_description

    work = args.work or Path(tempfile.mkdtemp(prefix="medsight-fundus-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        csv_path, patients = write_manifest(args.data.resolve(), work)
        result = one_run(csv_path, work / "run-planned", args.minutes, patients, sets)
        if args.compare_128:
            result["at_128"] = one_run(csv_path, work / "run-128", args.minutes, patients,
                                       [*sets, "--set", "transforms.spatial_size=[128,128]"])
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["cpu"] = cpu_description()
    result["split"] = "by patient (both eyes together), 70/15/15 stratified"
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _ci(ci: list | None) -> str:
    return "" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _v(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def print_table(r: dict) -> None:
    cpu = r["cpu"]
    print(f"\nfundus-dr, 10 classes, test split ({r['test_eyes']} eyes), split by patient; "
          f"{r['minutes']:g} min budget per run on {cpu['model']} (native bf16: {cpu['bf16_native']})")
    print(f"{'setting':<34}{'AUC':>7} {'95% CI':<16}{'AUC*':>7} {'95% CI':<16}{'ACC':>7} {'95% CI':<16}"
          f"{'kappa':>7} {'95% CI':<16}{'train s':>8}")
    runs = [("planned default", r)] + ([("spatial_size [128,128]", r["at_128"])] if "at_128" in r else [])
    for name, x in runs:
        label = f"{name} {x['input_shape']}"
        print(f"{label:<34}{_v(x['auc']):>7} {_ci(x['auc_ci']):<16}{_v(x['auc_present']):>7} "
              f"{_ci(x['auc_present_ci']):<16}{_v(x['acc']):>7} {_ci(x['acc_ci']):<16}"
              f"{x['kappa']:>7.3f} {_ci(x['kappa_ci']):<16}{x['train_seconds']:>8.0f}")
    if r["classes_absent_from_test"]:
        print(f"(AUC over 10 classes is undefined: no test eye of {', '.join(r['classes_absent_from_test'])})")
    print(f"(AUC one-vs-rest macro over 10 classes (medsight); AUC*: the same over the classes present in "
          f"the test split, CI by patient bootstrap; kappa quadratic-weighted on the 5 DR grades over "
          f"{r['kappa_eyes']} eyes of {r['kappa_patients']} patients, {r['aded_test_eyes_left_out']} ADED eye(s) "
          "left out, CI by patient bootstrap; no canonical published benchmark for this set)")


if __name__ == "__main__":
    sys.exit(main())
