"""How long a medsight process takes to start: MONAI with and without transformers' BERT.

    python bench/startup.py [--rounds 7] [--json OUT]

Alternates, in fresh interpreters, and quotes medians (wall seconds):

  monai     ``import monai.networks.nets`` alone: MONAI loads TransChex, which imports
            Hugging Face transformers' BERT when transformers is installed (it is, for peft)
  medsight  ``import medsight`` first (utils/startup.py: TransChex's transformers import is
            skipped), then the same import
  cli       ``medsight --help`` (the console script: the CLI's own imports, no MONAI)
  train     ``import medsight.training.run``: what ``medsight train`` loads before it reads
            any data (torch, MONAI, the trainer)

The CPU kind is printed: start-up is CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "monai": [sys.executable, "-c", "import monai.networks.nets"],
    "medsight": [sys.executable, "-c", "import medsight, monai.networks.nets"],
    "cli": [sys.executable, "-c", "import sys; from medsight.cli import main; sys.argv=['medsight','--help']; main()"],
    "train": [sys.executable, "-c", "import medsight.training.run"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from medsight.runtime import cpu_description

    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.rounds):
        for name, cmd in CASES.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t0)
    medians = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(f"CPU: {cpu_description()}; {args.rounds} rounds, alternating, medians (s)")
    print(f"{'case':10s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for k, v in times.items():
        print(f"{k:10s} {medians[k]:9.2f} {min(v):7.2f} {max(v):7.2f}")
    print(f"medsight / monai: {medians['medsight'] / medians['monai']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"medians_s": medians, "runs_s": times, "cpu": cpu_description()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
