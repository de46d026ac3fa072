"""Train and test on a MedMNIST ``.npz`` and compare with the MedMNIST v2 paper's baselines.

    python bench/medmnist.py PATH.npz [--config FILE | --planned] [--minutes M] [--folds K] [--tta] [--json OUT]

Trains with ``--config``, else the shipped config for the data set (``configs/<name>.yaml``),
else (or with ``--planned``) the planned default (no config: ``planning/classification.py``)
fitted to ``--minutes`` of training (10 when not given) on this machine; ``--folds K`` trains
a K-fold ensemble in those minutes. Evaluates on the official test split and prints AUC, ACC
and ECE beside the published numbers, with the CPU kind; ``--tta`` adds a second evaluation
of the same model(s) with test-time augmentation.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Test AUC / ACC from the MedMNIST v2 paper (Yang et al., Sci. Data 2023), as on medmnist.com.
BASELINES = {
    "breastmnist": {"ResNet-18 (28)": (0.901, 0.863), "ResNet-18 (224)": (0.891, 0.833),
                    "ResNet-50 (28)": (0.857, 0.812), "ResNet-50 (224)": (0.866, 0.842),
                    "auto-sklearn": (0.836, 0.803), "AutoKeras": (0.871, 0.831),
                    "Google AutoML Vision": (0.919, 0.861)},
    "retinamnist": {"ResNet-18 (28)": (0.717, 0.524), "ResNet-18 (224)": (0.710, 0.493),
                    "ResNet-50 (28)": (0.726, 0.528), "ResNet-50 (224)": (0.716, 0.511),
                    "auto-sklearn": (0.690, 0.515), "AutoKeras": (0.719, 0.503),
                    "Google AutoML Vision": (0.750, 0.531)},
    "adrenalmnist3d": {"ResNet-18 + 3D": (0.827, 0.721), "ResNet-18 + ACS": (0.839, 0.754),
                       "ResNet-50 + 3D": (0.828, 0.745), "ResNet-50 + ACS": (0.828, 0.758),
                       "auto-sklearn": (0.828, 0.802), "AutoKeras": (0.804, 0.705)},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("npz", type=Path)
    parser.add_argument("--config", type=Path, help="default: configs/<data set>.yaml")
    parser.add_argument("--planned", action="store_true", help="the planned default even if a config is shipped")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--out", type=Path, help="keep the run folder here (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--minutes", type=float, help="training budget for the planned default (default 10)")
    parser.add_argument("--folds", type=int, default=0, help="train a K-fold ensemble")
    parser.add_argument("--tta", action="store_true", help="evaluate with test-time augmentation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from medsight.config import load_config
    from medsight.evaluation.calibrate import calibrate_run
    from medsight.evaluation.evaluate import evaluate_run
    from medsight.runtime import cpu_description
    from medsight.training.run import train_folds, train_run

    name = args.npz.name.split(".")[0].split("_")[0].lower()
    if not args.npz.is_file():
        print(f"{args.npz}: not found", file=sys.stderr)
        return 2
    config = args.config or ROOT / "configs" / f"{name}.yaml"
    planned = args.planned or (args.config is None and not config.is_file())
    minutes = args.minutes or (10.0 if planned else None)
    overrides = ["data.dataset=medmnist", f"data.path={args.npz.resolve()}", f"name={name}", *args.set]
    if minutes:
        overrides.insert(0, f"train.time_budget_minutes={minutes}")
    cfg = load_config(None if planned else config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        if args.folds:
            train_folds(cfg, run_dir, args.folds, calibrate=calibrate_run)
        else:
            train_run(cfg, run_dir, overwrite=True, calibrate=calibrate_run)
        train_seconds = time.perf_counter() - t0
        evaluations = [(False, evaluate_run(run_dir, split="test"))]
        if args.tta:
            evaluations.append((True, evaluate_run(run_dir, split="test", tta=True)))
    results = []
    for tta, metrics in evaluations:
        label = "planned default" if planned else Path(config).stem
        label += f", {args.folds}-fold ensemble" if args.folds else ""
        label += " + TTA" if tta else ""
        result = {"dataset": name, "auc": metrics["auc"], "acc": metrics["accuracy"], "ece": metrics.get("ece"),
                  "train_seconds": round(train_seconds, 1), "config": "planned" if planned else str(config),
                  "setting": label, "tta": tta, "folds": args.folds, "cpu": cpu_description(),
                  "auc_ci": metrics["ci"]["auc"], "acc_ci": metrics["ci"]["accuracy"]}
        print_table(name, result)
        results.append(result)
    if args.json:  # the plain evaluation; with --tta its figures also under "with_tta"
        out = dict(results[0])
        if len(results) > 1:
            out["with_tta"] = {k: results[1][k] for k in ("auc", "acc", "ece", "auc_ci", "acc_ci", "setting")}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def print_table(name: str, result: dict) -> None:
    rows = [(f"medsight ({result['setting']})", result["auc"], result["acc"])]
    rows += [(method, auc, acc) for method, (auc, acc) in BASELINES.get(name, {}).items()]
    print(f"\n{name}: official test split; training took {result['train_seconds']:.0f} s on "
          f"{result['cpu']['model']} (native bf16: {result['cpu']['bf16_native']})")
    print(f"{'method':<34} {'AUC':>6} {'ACC':>6}")
    for method, auc, acc in rows:
        print(f"{method:<34} {auc:>6.3f} {acc:>6.3f}")
    lo, hi = result["auc_ci"]
    print(f"(medsight AUC 95% CI [{lo:.3f}, {hi:.3f}]; ECE {result['ece']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
