"""Fuzz campaign: every case of a seeded corpus of damaged files through medsight's readers,
``predict`` and ``deid``; count crashes, hangs, tracebacks and unclear refusals.

    python bench/fuzz.py --n 10000 --seed 0 --json fuzz.json      # by hand, under nice -n 15
    python bench/fuzz.py --show 0:1234                               # rebuild one case

Cases come from ``bench/fuzz_corpus.py`` (reproducible from the seed). Long-lived worker
processes run the library entry points (``bench/fuzz_targets.py``) with a time limit per case
(CPU seconds, so a loaded machine is not mistaken for a hang, plus a wall-clock limit for a
blocked read): a worker that overruns is killed and counted as a hang, one that dies (a signal, the address
space ceiling) as a crash, and a fresh worker takes over. A sample of cases, spread over the
mutation families, also goes through the real command line (``medsight predict`` and
``medsight deid`` in fresh processes), whose exit status must be 0 or 2, with no traceback and
no line on stderr other than medsight's own. A case counts once, by its worst result:
crash, else hang, else accepted or refused by ``read_image``.

JSON (stable for outside checks): ``cases, accepted, refused, crashes, hangs, tracebacks,
unclear`` (all counts of cases), plus details.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from multiprocessing.connection import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_corpus import build_case, family_of  # noqa: E402
from fuzz_targets import KEY, TARGETS, clear_refusal, worker_main  # noqa: E402

REASONS = (  # read_image's refusal problem -> reason, first match wins
    ("too large / bomb", r"too large|bomb|inflates|claims|more than this machine"),
    ("truncated", r"truncated|ends before|end of file|shorter"),
    ("empty", r"empty file|empty image|no data set|has no pixel"),
    ("NaN / Inf", r"NaN|infinite"),
    ("not an image", r"not an image|not a DICOM|no DICOM image|not a regular file|no such file|cannot open|"
                     r"not NIfTI|no pixel data|is not NIfTI|MedMNIST|gzip file"),
    ("cannot decode pixels", r"cannot decode|transfer syntax|decoder"),
    ("series problem", r"series|slice"),
    ("wrong shape / dtype / spacing", r"expected a 2D or 3D|shape|dimensions|dtype|spacing|channels|arrays"),
    ("unexpected (reader boundary)", r"unexpected"),
    ("corrupt header or data", r"unreadable|corrupt|invalid|cannot|pickled|unsupported|bytes"),
)
TINY_RUN = {
    "name": "fuzz-tiny",
    "data": {"dataset": "synthetic", "synthetic": {"n_train": 48, "n_val": 16, "n_test": 16, "size": 64}},
    "transforms": {"intensity": "window", "window": {"preset": "lung"}},
    "model": {"name": "resnet18-small", "options": {"width": 8}},
    "train": {"epochs": 1, "batch_size": 16, "precision": "fp32", "threads": 1},
    "evaluation": {"n_bootstrap": 50},
}


def reason_of(message: str) -> str:
    problem = message.split(": ", 1)[-1]
    return next((name for name, pattern in REASONS if re.search(pattern, problem, re.I)), "other")


def train_tiny_run(folder: Path) -> Path:
    """The small trained run ``predict`` is checked against (seconds to train)."""
    from medsight.config import config_from_dict
    from medsight.evaluation.calibrate import calibrate_run
    from medsight.training.run import train_run

    return train_run(config_from_dict(TINY_RUN), folder / "run", calibrate=calibrate_run)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTUP = 120.0  # allowance for a fresh worker's first case, which includes its imports


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


class Worker:
    """One worker process, its pipe and the case it is on.

    A case hangs when it uses more than ``--timeout`` seconds of CPU (a loop) or more than
    ``--wall-timeout`` seconds of wall time (a blocked read): CPU time, unlike wall time, does
    not count the minutes a busy shared machine keeps the worker waiting.
    """

    def __init__(self, ctx, args: argparse.Namespace, run_dir: Path, scratch: Path):
        self.args = args
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, str(run_dir), args.targets, str(scratch)),
                                   daemon=True)
        self.process.start()
        child.close()
        self.index: int | None = None
        self.fresh = True
        self.cpu0 = self.wall0 = 0.0

    def send(self, seed: int, index: int) -> None:
        self.index, self.cpu0, self.wall0 = index, cpu_seconds(self.process.pid), time.monotonic()
        self.conn.send((seed, index))

    def overran(self) -> bool:
        extra = STARTUP if self.fresh else 0.0
        return (cpu_seconds(self.process.pid) - self.cpu0 > self.args.timeout + extra
                or time.monotonic() - self.wall0 > self.args.wall_timeout + extra)

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()


def run_library(args: argparse.Namespace, run_dir: Path, scratch: Path) -> dict[int, dict]:
    """Every case through the library targets in ``args.workers`` processes; results by index."""
    ctx = multiprocessing.get_context("spawn")
    results: dict[int, dict] = {}
    todo = list(range(args.n))[::-1]
    workers = [Worker(ctx, args, run_dir, scratch) for _ in range(min(args.workers, args.n))]
    try:
        for w in workers:
            if todo:
                w.send(args.seed, todo.pop())
        shown = time.monotonic()
        while any(w.index is not None for w in workers):
            busy = [w for w in workers if w.index is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            for i, w in enumerate(workers):
                if w.index is None:
                    continue
                lost = None
                if w.conn in ready:
                    try:
                        results[w.index] = w.conn.recv()
                    except (EOFError, OSError):
                        lost = "crash"
                elif w.process.sentinel in ready:
                    lost = "crash"
                elif w.overran():
                    lost = "hang"
                else:
                    continue  # still working on its case
                if lost:
                    w.kill()
                    detail = "worker overran its time limit" if lost == "hang" else \
                        f"worker died (exit {w.process.exitcode})"
                    results[w.index] = {"index": w.index, "lost": lost, "detail": detail}
                    print(f"  case {args.seed}:{w.index}: {lost} ({detail})", file=sys.stderr, flush=True)
                    w = workers[i] = Worker(ctx, args, run_dir, scratch)
                else:
                    w.fresh = False
                w.index = None
                if todo:
                    w.send(args.seed, todo.pop())
            if time.monotonic() - shown > 30 and args.progress:
                shown = time.monotonic()
                print(f"  {len(results)}/{args.n} cases", file=sys.stderr, flush=True)
        for w in workers:
            w.conn.send(None)
            w.process.join(timeout=10)
    finally:  # also on Ctrl-C or SIGTERM: no worker outlives the campaign
        for w in workers:
            w.kill()
    return results


def cli_sample(args: argparse.Namespace) -> list[int]:
    """Case indices for the command-line check, spread round-robin over the families."""
    by_family: dict[str, list[int]] = defaultdict(list)
    for index in range(args.n):
        by_family[family_of(args.seed, index)].append(index)
    picked: list[int] = []
    while len(picked) < min(args.cli_sample, args.n):
        for family in sorted(by_family):
            if by_family[family] and len(picked) < args.cli_sample:
                picked.append(by_family[family].pop(0))
    return sorted(picked)


STDERR_OK = re.compile(r"^(medsight: |(DEBUG|INFO|WARNING|ERROR) medsight[.:])")


def run_cli_case(seed: int, index: int, run_dir: Path, folder: Path, timeout: float) -> dict:
    """One case through ``medsight predict`` and ``medsight deid`` in fresh processes."""
    folder.mkdir(parents=True)
    case = build_case(seed, index, folder)
    key = folder / "site.key"
    key.write_bytes(KEY)
    commands = {"predict": ["predict", str(run_dir), str(case.path), "--out", str(folder / "pred")],
                "deid": ["deid", str(case.path), str(folder / "deid"), "--key-file", str(key)]}
    checks = {}
    for name, command in commands.items():
        try:
            proc = subprocess.run([sys.executable, "-m", "medsight.cli", *command], capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            checks[name] = {"status": "hang"}
            continue
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("medsight: error: ")]
        unclear = [line for line in lines if not STDERR_OK.match(line)]
        unclear += [line for line in errors if not clear_refusal(line, case.path)]
        if proc.returncode == 2 and not errors:
            unclear.append(f"exit 2 without an error line: {lines[-1:]}")
        # predict over a folder lists each bad file on its own line (every one checked above)
        status = "ok" if proc.returncode == 0 else "refused" if proc.returncode == 2 else "crash"
        if "Traceback (most recent call last)" in proc.stdout + proc.stderr:
            unclear.append("traceback: " + " | ".join(lines[-3:]))
        checks[name] = {"status": status, "exit": proc.returncode, "unclear": unclear[:3],
                        "traceback": "Traceback (most recent call last)" in proc.stdout + proc.stderr,
                        "error": errors[0] if errors else ""}
    return {"index": index, "family": case.family, "detail": case.detail, "checks": checks}


def summarise(args, results: dict[int, dict], cli: list[dict], seconds: float) -> dict:
    verdicts: Counter = Counter()
    reasons: Counter = Counter()
    per_target: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list] = defaultdict(list)
    tracebacks, unclear_cases, peak, slowest = set(), set(), (0.0, None), (0.0, None)
    cli_by_index = {c["index"]: c for c in cli}

    def note(kind: str, index: int, text: str) -> None:
        if len(examples[kind]) < args.examples:
            examples[kind].append(f"{args.seed}:{index} {results.get(index, {}).get('family', '')} "
                                  f"[{results.get(index, {}).get('detail', '')}] {text}"[:400])

    for index in range(args.n):
        r = results.get(index, {"lost": "hang", "detail": "never finished"})
        c = cli_by_index.get(index, {"checks": {}})
        if "lost" in r:
            verdict = "crashes" if r["lost"] == "crash" else "hangs"
            note(verdict, index, r["detail"])
        else:
            peak = max(peak, (r["peak_mb"], index), key=lambda p: p[0])
            statuses = {name: status for name, (status, _, _) in r["results"].items()}
            for name, (status, messages, unclear) in r["results"].items():
                per_target[name][status] += 1
                if status == "crash":
                    note("crashes", index, f"{name}: {messages[0] if messages else ''}")
                if unclear:
                    unclear_cases.add(index)
                    per_target[name]["unclear"] += 1
                    note("unclear", index, f"{name}: {unclear[0]}")
            first = r["results"].get("read_image") or next(iter(r["results"].values()))
            if "crash" in statuses.values():
                verdict = "crashes"
            elif first[0] == "accepted":
                verdict = "accepted"
            else:
                verdict = "refused"
                reason = reason_of(first[1][0] if first[1] else "")
                reasons[reason] += 1
                if reason.startswith("unexpected"):
                    note("unexpected", index, first[1][0])
            slowest = max(slowest, (r["cpu_seconds"], index), key=lambda p: p[0])
        for name, check in c["checks"].items():
            per_target[f"cli {name}"][check["status"]] += 1
            if check["status"] in ("crash", "hang"):
                verdict = {"crash": "crashes", "hang": "hangs"}[check["status"]]
                note(verdict, index, f"cli {name}: exit {check.get('exit')}")
            if check.get("traceback"):
                tracebacks.add(index)
                note("tracebacks", index, f"cli {name}")
            if check.get("unclear"):
                unclear_cases.add(index)
                per_target[f"cli {name}"]["unclear"] += 1
                note("unclear", index, f"cli {name}: {check['unclear'][0]}")
        verdicts[verdict] += 1
    from medsight.runtime import cpu_description

    return {
        "cases": args.n, "accepted": verdicts["accepted"], "refused": verdicts["refused"],
        "crashes": verdicts["crashes"], "hangs": verdicts["hangs"], "tracebacks": len(tracebacks),
        "unclear": len(unclear_cases), "refused_by_reason": dict(reasons.most_common()),
        "targets": {k: dict(v) for k, v in per_target.items()}, "cli_cases": len(cli),
        "peak_memory_mb": round(peak[0], 1), "peak_memory_case": f"{args.seed}:{peak[1]}",
        "slowest_case_cpu_seconds": round(slowest[0], 1), "slowest_case": f"{args.seed}:{slowest[1]}",
        "families": dict(Counter(r.get("family", "?") for r in results.values()).most_common()),
        "seed": args.seed, "seconds": round(seconds, 1), "timeout_cpu_seconds": args.timeout,
        "timeout_wall_seconds": args.wall_timeout, "workers": args.workers,
        "cpu": cpu_description(), "examples": dict(examples),
    }


def print_table(s: dict) -> None:
    print(f"fuzz campaign: seed {s['seed']}, {s['cases']} cases ({s['cli_cases']} also through the CLI), "
          f"{s['seconds']:.0f} s, {s['workers']} workers, limit per case {s['timeout_cpu_seconds']:.0f} s CPU / "
          f"{s['timeout_wall_seconds']:.0f} s wall; {s['cpu']['model']}")
    print(f"\n| {'outcome':<34} | {'cases':>6} |\n|{'-' * 36}|{'-' * 8}|")
    rows = [("accepted (read_image)", s["accepted"]), ("refused (read_image), one clear line", s["refused"])]
    rows += [(f"  refused: {reason}", n) for reason, n in s["refused_by_reason"].items()]
    rows += [("crashes", s["crashes"]), ("hangs", s["hangs"]), ("tracebacks (CLI)", s["tracebacks"]),
             ("unclear refusals", s["unclear"]), ("peak memory of a case (MB)", s["peak_memory_mb"]),
             ("slowest case (CPU s)", s["slowest_case_cpu_seconds"])]
    for name, n in rows:
        print(f"| {name:<34} | {n:>6} |")
    print(f"\n| {'target':<14} | {'accepted':>8} | {'refused':>8} | {'crash':>6} | {'unclear':>7} | {'n/a':>5} |")
    print(f"|{'-' * 16}|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 9}|{'-' * 7}|")
    for name, counts in s["targets"].items():
        print(f"| {name:<14} | {counts.get('accepted', 0) + counts.get('ok', 0):>8} | "
              f"{counts.get('refused', 0):>8} | {counts.get('crash', 0) + counts.get('hang', 0):>6} | "
              f"{counts.get('unclear', 0):>7} | {counts.get('skipped', 0):>5} |")
    for kind, lines in s["examples"].items():
        print(f"\n{kind}:")
        for line in lines:
            print(f"  {line}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000, help="number of cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="CPU seconds per case (all targets)")
    parser.add_argument("--wall-timeout", type=float, default=900.0, help="wall-clock seconds per case")
    parser.add_argument("--run", type=Path, help="trained run for predict (default: train a tiny one)")
    parser.add_argument("--cli-sample", type=int, default=60, help="cases also run through the CLI")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument("--examples", type=int, default=5, help="examples listed per problem kind")
    parser.add_argument("--show", metavar="SEED:INDEX", help="rebuild one case into ./fuzz-case and exit")
    parser.add_argument("--quiet", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    import medsight  # noqa: F401 - fail here, not as a crash in every case, if it is not importable

    warnings.simplefilter("ignore")  # pydicom's, while this process builds the CLI sample's cases
    if args.show:
        seed, index = map(int, args.show.split(":"))
        Path("fuzz-case").mkdir(exist_ok=True)
        case = build_case(seed, index, Path("fuzz-case"))
        print(f"{case.path}: {case.family} [{case.detail}]")
        return {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups, as on Ctrl-C
    with tempfile.TemporaryDirectory(prefix="medsight-fuzz-") as tmp:
        scratch = Path(tmp)
        run_dir = args.run or train_tiny_run(scratch)
        t0 = time.monotonic()
        sample = cli_sample(args) if "predict" in args.targets else []
        cli_results: list[dict] = []
        thread = threading.Thread(target=lambda: cli_results.extend(
            run_cli_case(args.seed, i, run_dir, scratch / "cli" / f"case{i}", args.wall_timeout) for i in sample))
        thread.start()
        results = run_library(args, run_dir, scratch)
        thread.join()
        summary = summarise(args, results, cli_results, time.monotonic() - t0)
    print_table(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
