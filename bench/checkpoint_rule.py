"""Which epoch should ``best.pt`` keep? Checkpoint rules compared on the same training runs.

    python bench/checkpoint_rule.py [breastmnist retinamnist demo planned:retinamnist:8 ...]
                                    [--seeds 0 1 2] [--precision auto|fp32] [--json OUT]

Each run trains once (a shipped config, the demo's, or ``planned:<name>:<minutes>`` for the
planned default) and scores every epoch's weights on the official test split. Each rule then
picks an epoch from the validation curve alone, as it would have during training, and the
table shows the test AUC / ACC of the epochs picked, averaged over seeds, beside the oracle
(the best test epoch, which no rule can know). Since every rule reads the same curves, their
differences are not machine noise or a different training run. ``medsight`` is the trainer's
rule as shipped; ``1se`` the one before it (the latest epoch within one standard error of the
best). ``--table OUT.json`` prints the table again from a saved run, with the rules as they
are now, without training.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def config_for(spec: str, seed: int):
    from bf16_accuracy import config_for as shipped
    from medsight.config import load_config

    if not spec.startswith("planned:"):
        return shipped(spec, seed)
    _, name, minutes = spec.split(":")
    npz = DATA / name / f"{name}.npz"
    if not npz.is_file():
        return None
    return load_config(None, [f"train.time_budget_minutes={minutes}", "data.dataset=medmnist",
                              f"data.path={npz}", f"name={name}", f"train.seed={seed}"])


def train_and_score(cfg, run_dir: Path) -> list[dict]:
    """Train; return one row per epoch: its validation metrics and its weights' test AUC / ACC."""
    import torch

    from medsight.evaluation.classification import classification_metrics
    from medsight.inference.load import load_run
    from medsight.runtime.checkpoint import load_checkpoint
    from medsight.runtime.run_folder import LAST, checkpoint_path
    from medsight.training.history import read_history
    from medsight.training.run import train_run

    weights: dict[int, dict] = {}

    def keep_weights(epoch: int, row: dict) -> None:
        weights[epoch] = load_checkpoint(checkpoint_path(run_dir, LAST))["model"]

    train_run(cfg, run_dir, overwrite=True, callbacks=[keep_weights])
    run = load_run(run_dir, prefer_onnx=False)
    test = run.prepared_splits(["test"])["test"]
    y = test.labels.numpy()
    rows = read_history(run_dir)
    out = []
    for row in rows:
        epoch = int(row["epoch"])
        run.model.load_state_dict(weights[epoch])
        with torch.inference_mode():
            probs = torch.softmax(run.view_logits(test.images)[0].float(), -1).numpy()
        m = classification_metrics(y, probs, run.class_names, n_bootstrap=0)
        out.append({"epoch": epoch, "val_auc": row.get("val_auc"), "val_auc_se": row.get("val_auc_se"),
                    "val_loss": row.get("val_loss"), "test_auc": m["auc"], "test_acc": m["accuracy"]})
    return out


# --- rules: each maps the validation curve to the epoch (index) it keeps -------------------------

def _first_max(values: list[float]) -> int:
    return int(np.nanargmax(np.asarray(values, dtype=float)))


def stopper_rule(**options):
    """The trainer's own rule (training/early_stopping.py), with these options."""
    def rule(rows: list[dict]) -> int:
        from medsight.training.early_stopping import EarlyStopping

        stopper, kept = EarlyStopping("val_auc", **options), 0
        for i, r in enumerate(rows):
            if stopper.update(i + 1, r):
                kept = i
        return kept
    return rule


def rule_last(rows: list[dict]) -> int:
    return len(rows) - 1


def trailing_mean(width: int):
    def rule(rows: list[dict]) -> int:
        v = [r["val_auc"] for r in rows]
        return _first_max([statistics.mean(v[max(0, i - width + 1):i + 1]) for i in range(len(v))])
    rule.__name__ = f"mean{width}"
    return rule


def rule_min_loss(rows: list[dict]) -> int:
    return int(np.nanargmin(np.asarray([r["val_loss"] for r in rows], dtype=float)))


def rule_oracle(rows: list[dict]) -> int:
    return _first_max([r["test_auc"] for r in rows])


RULES = {"medsight": stopper_rule(), "max": stopper_rule(smoothing=1.0),
         "1se": stopper_rule(smoothing=1.0, within_se=True), "last": rule_last, "mean3": trailing_mean(3),
         "mean5": trailing_mean(5), "ema0.5": stopper_rule(smoothing=0.5), "min-loss": rule_min_loss,
         "oracle": rule_oracle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", default=["breastmnist", "retinamnist", "demo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--precision", choices=["auto", "fp32"], default="auto")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="print the table of a saved --json output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from medsight.runtime import cpu_description, device

    if args.table:
        saved = json.loads(args.table.read_text())
        print_summary(saved["runs"], saved["cpu"])
        return 0

    if args.precision == "fp32":
        os.environ[device.PRECISION_ENV] = "fp32"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.datasets:
            for seed in args.seeds:
                cfg = config_for(spec, seed)
                if cfg is None:
                    print(f"{spec}: not in {DATA}; skipped", file=sys.stderr)
                    break
                epochs = train_and_score(cfg, Path(tmp) / f"{spec.replace(':', '-')}-{seed}")
                picks = {name: rule(epochs) for name, rule in RULES.items()}
                runs.append({"dataset": spec, "seed": seed, "epochs": epochs, "picks": picks})
                print(f"{spec:<24} seed {seed}: {len(epochs)} epochs; " + ", ".join(
                    f"{n} {i + 1}:{epochs[i]['test_auc']:.3f}" for n, i in picks.items()), flush=True)
    print_summary(runs, cpu_description())
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_description(), "runs": runs}, indent=2) + "\n")
    return 0


def print_summary(runs: list[dict], cpu: dict) -> None:
    print(f"\ntest AUC / ACC of the epoch each rule keeps, mean over seeds; {cpu['model']}")
    specs = list(dict.fromkeys(r["dataset"] for r in runs))
    print(f"{'rule':<9} " + " ".join(f"{s[:22]:>22}" for s in specs) + f" {'mean AUC':>9}")
    for name in RULES:
        cells, aucs = [], []
        for spec in specs:
            picked = [r["epochs"][RULES[name](r["epochs"])] for r in runs if r["dataset"] == spec]
            auc = statistics.mean(p["test_auc"] for p in picked)
            acc = statistics.mean(p["test_acc"] for p in picked)
            aucs.append(auc)
            cells.append(f"{auc:.3f} / {acc:.3f}")
        print(f"{name:<9} " + " ".join(f"{c:>22}" for c in cells) + f" {statistics.mean(aucs):>9.3f}")


if __name__ == "__main__":
    sys.exit(main())
