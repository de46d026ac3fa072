"""Train and test on a MedMNIST ``.npz`` and compare with the MedMNIST v2 paper's baselines.

    python bench/medmnist.py ../shared/data/breastmnist/breastmnist.npz [--config FILE] [--json OUT]

Trains with the shipped config for the data set (``configs/<name>.yaml``), evaluates the best
checkpoint on the official test split and prints AUC and ACC beside the published numbers.
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
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--out", type=Path, help="keep the run folder here (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from medsight.config import load_config
    from medsight.evaluation.evaluate import evaluate_run
    from medsight.training.run import train_run

    name = args.npz.name.split(".")[0].split("_")[0].lower()
    config = args.config or ROOT / "configs" / f"{name}.yaml"
    if not args.npz.is_file():
        print(f"{args.npz}: not found", file=sys.stderr)
        return 2
    if not config.is_file():
        print(f"{config}: no shipped config for {name}; pass --config", file=sys.stderr)
        return 2
    cfg = load_config(config, [f"data.path={args.npz.resolve()}", *args.set])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        train_run(cfg, run_dir, overwrite=True)
        train_seconds = time.perf_counter() - t0
        metrics = evaluate_run(run_dir, split="test")
    result = {"dataset": name, "auc": metrics["auc"], "acc": metrics["accuracy"],
              "train_seconds": round(train_seconds, 1), "config": str(config),
              "auc_ci": metrics["ci"]["auc"], "acc_ci": metrics["ci"]["accuracy"]}
    print_table(name, result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def print_table(name: str, result: dict) -> None:
    rows = [(f"medsight ({Path(result['config']).stem})", result["auc"], result["acc"])]
    rows += [(method, auc, acc) for method, (auc, acc) in BASELINES.get(name, {}).items()]
    print(f"\n{name}: official test split; training took {result['train_seconds']:.0f} s")
    print(f"{'method':<34} {'AUC':>6} {'ACC':>6}")
    for method, auc, acc in rows:
        print(f"{method:<34} {auc:>6.3f} {acc:>6.3f}")
    lo, hi = result["auc_ci"]
    print(f"(medsight AUC 95% CI [{lo:.3f}, {hi:.3f}])")


if __name__ == "__main__":
    sys.exit(main())
