"""kill -9 during training, resume, repeat; the end must equal an uninterrupted run bit for bit.

    python bench/kill_resume.py --kills 20 --json kill_resume.json      # by hand, nice -n 15

A tiny model trains for many short epochs (fp32, one thread, augmentation on, warm-up then
cosine decay) with ``medsight train`` in a child process. The bench kills the child with
SIGKILL at random moments (during start-up, inside an epoch, and, because the child's writes
are slowed down, often in the middle of writing a checkpoint or the metrics log), checks that
no file in the run folder is half-written (every ``.pt`` loads, every ``metrics.jsonl`` line
parses, JSON and YAML parse), and resumes with ``--resume``. After the last kill the run
finishes; its ``last.pt`` and ``best.pt`` weights must equal those of an uninterrupted run of
the same seed, bit for bit.

The slow writes are a hook of this bench only (``--child`` patches ``medsight.utils.atomic``
in the child): each atomic write trickles its bytes into the temporary file, like a slow disk.

JSON (stable for outside checks): ``kills, resumed, bit_exact, corrupt_files`` plus details.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

CONFIG = {
    "name": "kill-resume",
    "data": {"dataset": "synthetic", "synthetic": {"n_train": 64, "n_val": 24, "n_test": 8, "size": 32}},
    "transforms": {"intensity": "window", "window": {"preset": "lung"},
                   "augment": {"rotate_degrees": 10, "flip": [1], "noise_std": 0.05, "prob": 0.5}},
    "model": {"name": "resnet18-small", "options": {"width": 4}},
    "train": {"epochs": 30, "batch_size": 16, "lr": 0.003, "optimizer": "adamw", "warmup_epochs": 2,
              "schedule": "cosine", "precision": "fp32", "threads": 1, "seed": 7},
    "evaluation": {"n_bootstrap": 50},
}


# -- the child: medsight train with slow atomic writes -------------------------------------------


def slow_down_writes(seconds: float) -> None:
    """Make every atomic write take about ``seconds``, bytes trickling into the temporary file."""
    import medsight.utils.atomic as atomic

    original = atomic.atomic_path

    @contextlib.contextmanager
    def slow_atomic_path(path):
        with original(path) as tmp:
            yield tmp
            data = tmp.read_bytes()
            steps = 8
            with open(tmp, "wb") as fh:
                for i in range(steps):
                    fh.write(data[i * len(data) // steps:(i + 1) * len(data) // steps])
                    fh.flush()
                    time.sleep(seconds / steps)

    atomic.atomic_path = slow_atomic_path


def child(argv: list[str]) -> None:
    seconds, *cli_args = argv
    slow_down_writes(float(seconds))
    from medsight.cli import app

    app(cli_args)


# -- checking a run folder ----------------------------------------------------------------------


def corrupt_files(run_dir: Path) -> list[str]:
    """Files under their final names that do not parse; temporary files are not counted."""
    import torch

    bad = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        try:
            if path.suffix == ".pt":
                torch.load(path, map_location="cpu", weights_only=False)
            elif path.suffix == ".jsonl":
                lines = path.read_text().splitlines()
                assert lines and all(json.loads(line) for line in lines)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix in (".yaml", ".yml"):
                yaml.safe_load(path.read_text())
            elif path.suffix == ".png":
                from PIL import Image

                with Image.open(path) as image:
                    image.load()
        except Exception as exc:  # noqa: BLE001 - any failure to parse is corruption
            bad.append(f"{path.relative_to(run_dir)}: {type(exc).__name__}")
    return bad


def temp_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*.tmp") if p.is_file())


def epochs_logged(run_dir: Path) -> int:
    try:
        return len((run_dir / "metrics.jsonl").read_text().splitlines())
    except (OSError, UnicodeDecodeError):
        return 0


def same_weights(a: Path, b: Path) -> bool:
    """The ``model`` state of two checkpoints, compared bit for bit (NaN and -0.0 included)."""
    import torch

    def bits(t: torch.Tensor) -> torch.Tensor:
        return t.detach().contiguous().reshape(-1).view(torch.uint8)

    wa = torch.load(a, map_location="cpu", weights_only=False)["model"]
    wb = torch.load(b, map_location="cpu", weights_only=False)["model"]
    return wa.keys() == wb.keys() and all(
        wa[k].dtype == wb[k].dtype and wa[k].shape == wb[k].shape and torch.equal(bits(wa[k]), bits(wb[k]))
        for k in wa)


TIMINGS = {"seconds", "train_images_per_second"}  # wall-clock figures, not results


def same_history(a: Path, b: Path) -> bool:
    def rows(run: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    return rows(a) == rows(b)


# -- the bench ----------------------------------------------------------------------------------


def wait_until(proc: subprocess.Popen, condition, poll: float = 0.02) -> float:
    """Poll until ``condition()`` holds or ``proc`` ends; return the time it did."""
    while proc.poll() is None and not condition():
        time.sleep(poll)
    return time.monotonic()


def start(config: Path, out: Path, slow: float, resume: bool, log) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", str(slow), "train", str(config), "--out", str(out)]
    return subprocess.Popen(command + (["--resume"] if resume else []), stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--epochs", type=int, default=CONFIG["train"]["epochs"])
    parser.add_argument("--slow-writes", type=float, default=0.4, help="seconds each atomic write takes")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medsight-kill-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yaml"
        cfg = json.loads(json.dumps(CONFIG))
        cfg["train"]["epochs"] = args.epochs
        config.write_text(yaml.safe_dump(cfg))
        log = open(root / "children.log", "w")

        reference, run = root / "reference", root / "interrupted"
        started = time.monotonic()
        proc = start(config, reference, args.slow_writes, False, log)
        first_epoch = wait_until(proc, lambda: epochs_logged(reference) >= 1) - started
        if proc.wait() != 0:
            raise SystemExit(f"the uninterrupted run failed; see {root / 'children.log'}")
        reference_seconds = time.monotonic() - started
        epoch_seconds = (reference_seconds - first_epoch) / max(args.epochs - 1, 1)

        kills, resumed, moments, corrupt, finished_early = 0, 0, Counter(), [], False
        while kills < args.kills:
            resume = (run / "checkpoints" / "last.pt").is_file()
            resumed += resume
            before = set(temp_files(run))
            done = epochs_logged(run)
            proc = start(config, run, args.slow_writes, resume, log)
            # A random moment: during start-up, inside an epoch, or inside a write. Each kill
            # lets at most one more epoch finish while more kills remain than epochs.
            moment = rng.choice(("start-up", "epoch", "epoch", "write", "write"))
            more = rng.choice((0, 1)) if args.epochs - done > args.kills - kills + 1 else 0
            # Timings come from the reference run; the machine may since be faster, so no
            # moment lets more epochs finish than intended.
            if moment == "start-up":
                deadline = time.monotonic() + rng.uniform(0, first_epoch)
                wait_until(proc, lambda: time.monotonic() > deadline or epochs_logged(run) > done)
            else:
                wait_until(proc, lambda: epochs_logged(run) >= done + more)
                if moment == "epoch":
                    deadline = time.monotonic() + rng.uniform(0, epoch_seconds)
                    wait_until(proc, lambda: time.monotonic() > deadline or epochs_logged(run) > done + more)
                else:  # as soon as a new temporary file shows that a write is under way
                    wait_until(proc, lambda: bool(set(temp_files(run)) - before), poll=0.005)
                    time.sleep(rng.uniform(0, args.slow_writes))
            if proc.poll() is not None:
                finished_early = proc.returncode == 0
                if finished_early:
                    break
                raise SystemExit(f"training failed (exit {proc.returncode}); see {root / 'children.log'}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            mid_write = bool(set(temp_files(run)) - before)  # a write was cut short
            # What the kill cut: a write, the start-up or first epoch of this process, or a later epoch.
            moment = "write" if mid_write else "start / 1st epoch" if epochs_logged(run) == done else "later epoch"
            moments[moment] += 1
            corrupt += [f"after kill {kills}: {c}" for c in corrupt_files(run)]
            print(f"kill {kills}: after epoch {epochs_logged(run)} of {args.epochs}, during {moment}",
                  file=sys.stderr, flush=True)

        if not finished_early:
            resumed += (run / "checkpoints" / "last.pt").is_file()
            final = start(config, run, args.slow_writes, (run / "checkpoints" / "last.pt").is_file(), log)
            if final.wait() != 0:
                raise SystemExit(f"the final resume failed; see {root / 'children.log'}")
        corrupt += [f"at the end: {c}" for c in corrupt_files(run)]
        left = [str(p.relative_to(run)) for p in temp_files(run)]
        bit_exact = all(same_weights(reference / "checkpoints" / n, run / "checkpoints" / n)
                        for n in ("last.pt", "best.pt"))
        history = same_history(reference, run)
        log.close()

    from medsight.runtime import cpu_description

    result = {
        "kills": kills, "resumed": resumed, "bit_exact": bit_exact, "corrupt_files": len(corrupt),
        "corrupt_file_list": corrupt, "kills_during_writes": moments["write"], "kill_moments": dict(moments),
        "history_equal": history,
        "temp_files_left": left, "epochs": args.epochs, "finished_before_last_kill": finished_early,
        "reference_seconds": round(reference_seconds, 1), "seconds": round(time.monotonic() - t0, 1),
        "cpu": cpu_description(),
    }
    print(f"\nkill -9 and resume: {result['cpu']['model']}, {args.epochs} epochs, fp32, 1 thread\n")
    print("| check | result |\n|---|---|")
    for key in ("kills", "kill_moments", "resumed", "bit_exact", "history_equal", "corrupt_files",
                "temp_files_left", "seconds"):
        print(f"| {key} | {result[key]} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
