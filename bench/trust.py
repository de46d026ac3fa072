"""Calibration, test-time augmentation, referral and explanation cost on a trained run.

    python bench/trust.py RUN [--split test] [--repeats 5]

Evaluates the run without and with TTA (into a temporary folder, the run is left alone) and
prints ECE before/after temperature scaling, AUC and accuracy, and the retained accuracy when
10% and 20% of the most uncertain cases are referred; then the time per image of a batch
prediction without/with TTA and of each explanation method (medians of alternated repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _row(label: str, m: dict) -> str:
    ref = dict(zip(m["referral"]["fraction_referred"], m["referral"]["accuracy"]))
    auc = f"{m['auc']:.3f}" if m.get("auc") is not None else "-"
    return (f"| {label} | {auc} | {m['accuracy']:.3f} | {m['calibration']['ece_uncalibrated']:.3f} | "
            f"{m['calibration']['ece']:.3f} | {m['calibration']['temperature']:.2f} | {ref[0.1]:.3f} | {ref[0.2]:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from medsight.evaluation.calibrate import val_split
    from medsight.evaluation.evaluate import evaluate_run
    from medsight.inference.explain import METHODS, explain
    from medsight.inference.load import load_run
    from medsight.runtime import cpu_description

    if not (args.run / "calibration.json").is_file():
        print(f"{args.run}: no calibration.json; run `medsight calibrate` first", file=sys.stderr)
        return 2
    cal = json.loads((args.run / "calibration.json").read_text())
    print(f"CPU: {cpu_description()}; run {args.run}")
    print(f"val (n = {cal['n']}): T {cal['temperature']:.3f}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}, "
          f"NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}; review threshold {cal['review_threshold']:.3f}")
    print(f"\n{args.split} split:\n")
    print("| mode | AUC | ACC | ECE raw | ECE calibrated | T | ACC 10% referred | ACC 20% referred |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for tta in (False, True):
            m = evaluate_run(args.run, split=args.split, out_dir=Path(tmp) / str(tta), tta=tta)
            print(_row("TTA" if tta else "plain", m))

    run = load_run(args.run)
    images = val_split(run).images[:64]
    timings: dict[str, list[float]] = {"predict": [], "predict --tta": [], **{m: [] for m in METHODS}}
    for _ in range(args.repeats):  # alternate the modes so load changes hit all alike
        for tta in (False, True):
            t0 = time.perf_counter()
            run.probabilities(images, tta)
            timings["predict --tta" if tta else "predict"].append((time.perf_counter() - t0) / len(images))
        for method in METHODS:
            t0 = time.perf_counter()
            explain(run.model, run.cfg.model.name, run.runtime.batch(images[:1])[0], 1, method)
            timings[method].append(time.perf_counter() - t0)
    print(f"\nms per image ({run.engine.name}; predictions in a batch of {len(images)}, explanations one by one; "
          f"median of {args.repeats}):\n")
    print("| step | ms |\n|---|---|")
    for step, values in timings.items():
        print(f"| {step} | {1000 * statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
