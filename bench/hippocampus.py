"""3D segmentation of the hippocampus (MSD Task04) beside nnU-Net's published Dice.

    python bench/hippocampus.py [--data DIR] [--test-data DIR] [--minutes M] [--json OUT] [--out RUN]

Trains the planned DynUNet on the MSD-layout folder ``--data`` (default
``../shared/data/hippocampus``) within a time budget (default 18 minutes on a CPU with
native bf16, 38 without), then segments cases it never trained on: every case of
``--test-data`` (an MSD-layout folder with imagesTr/ and labelsTr/) or, without it, a
held-out 20% of ``--data`` by patient. Prints Dice and HD95 per structure beside nnU-Net's
5-fold figures (0.8975 / 0.8807) and the CPU kind; ``--json`` writes
``{"dice": {"anterior", "posterior"}, "hd95_mm": {...}, "train_seconds", ...}``.
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
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hippocampus"
NNUNET = {"anterior": 0.8975, "posterior": 0.8807}  # 3d_fullres, 5-fold CV (MONAI DynUNet tutorial)
BASELINE = {"anterior": 0.885, "posterior": 0.868}  # plain MONAI 3D U-Net loop, 20 min fp32 (issue 7)


def config(data: Path, minutes: float, held_out: bool) -> dict:
    return {
        "name": "hippocampus", "task": "segmentation",
        "data": {"dataset": "msd", "path": str(data),
                 "split_fractions": [0.72, 0.08, 0.20] if held_out else [0.92, 0.08, 0.0]},
        "transforms": {"augment": {"rotate_degrees": 15, "zoom": 0.1, "flip": [0, 1, 2],
                                   "contrast": 0.2, "intensity_shift": 0.05, "prob": 0.3}},
        "model": {"name": "dynunet", "spatial_dims": 3},
        "train": {"epochs": 1000, "time_budget_minutes": minutes, "optimizer": "adamw", "lr": 0.003,
                  "weight_decay": 3e-5, "schedule": "cosine", "warmup_epochs": 2, "seed": 0},
        "segmentation": {"mirror_tta": True, "sw_overlap": 0.5},
        "evaluation": {"n_bootstrap": 1000},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--test-data", type=Path)
    p.add_argument("--minutes", type=float, help="training budget (default 18 with native bf16, else 38)")
    p.add_argument("--json", type=Path)
    p.add_argument("--out", type=Path, help="keep the run folder here (default: a temporary folder)")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from medsight.config import apply_override, config_from_dict
    from medsight.evaluation.evaluate_segmentation import evaluate_segmentation
    from medsight.runtime import cpu_description
    from medsight.training.run import train_run

    if not (args.data / "imagesTr").is_dir():
        print(f"{args.data}: not an MSD-layout folder (no imagesTr/)", file=sys.stderr)
        return 2
    cpu = cpu_description()
    minutes = args.minutes or (18.0 if cpu["bf16_native"] else 38.0)
    raw = config(args.data.resolve(), minutes, held_out=args.test_data is None)
    for item in args.set:
        apply_override(raw, item)
    cfg = config_from_dict(raw, "bench/hippocampus.py")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        train_run(cfg, run_dir, overwrite=True)
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        if args.test_data is not None:
            metrics = evaluate_segmentation(run_dir, split="test", data=args.test_data.resolve())
        else:
            metrics = evaluate_segmentation(run_dir, split="test")
        infer_seconds = time.perf_counter() - t1
    per_class = metrics["summary"]["per_class"]
    result = {
        "dice": {name.lower(): per_class[name]["dice"]["mean"] for name in per_class},
        "dice_ci": {name.lower(): per_class[name]["dice"]["ci"] for name in per_class},
        "hd95_mm": {name.lower(): per_class[name]["hd95_mm"]["mean"] for name in per_class},
        "train_seconds": round(train_seconds, 1), "inference_seconds": round(infer_seconds, 1),
        "test_cases": metrics["n"], "test_data": str(args.test_data or f"{args.data} (held-out 20%)"),
        "cpu": cpu, "time_budget_minutes": minutes,
    }
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def print_table(r: dict) -> None:
    print(f"\nHippocampus (MSD Task04), {r['test_cases']} test cases: {r['test_data']}")
    print(f"CPU: {r['cpu']['model']} (native bf16: {r['cpu']['bf16_native']}); training "
          f"{r['train_seconds']:.0f} s (budget {r['time_budget_minutes']:.0f} min)")
    print(f"{'':<36}{'anterior':>10}{'posterior':>11}{'mean':>8}")
    rows = [("medsight Dice", r["dice"]), ("nnU-Net 3d_fullres (5-fold CV)", NNUNET),
            ("plain MONAI 3D U-Net, 20 min", BASELINE)]
    for name, d in rows:
        a, b = d.get("anterior"), d.get("posterior")
        print(f"{name:<36}{a:>10.4f}{b:>11.4f}{(a + b) / 2:>8.4f}")
    h = r["hd95_mm"]
    print(f"{'medsight HD95 (mm)':<36}{h.get('anterior') or float('nan'):>10.2f}{h.get('posterior') or float('nan'):>11.2f}")


if __name__ == "__main__":
    sys.exit(main())
