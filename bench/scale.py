"""Clinical scale: memory, preprocessing rate, cache size and rerun start-up on large file sets.

    python bench/scale.py [--sizes-2d 1000,5000,20000] [--volumes 20,100] [--px 1024]
                          [--ct-shape 512,512,300] [--minutes 2] [--work DIR] [--keep] [--json OUT]

Writes synthetic data sets to disk under ``--work`` (default: a temporary folder under /tmp,
deleted at the end unless ``--keep``):

- 2D: N grey PNG "X-rays" of px x px, two classes (a smooth random background; class 1 adds a
  bright blob), manifest ``path,label,patient_id``;
- 3D: N NIfTI CT volumes (.nii.gz, int16 HU, spacing 0.7 x 0.7 x 1.5 mm: air, a body ellipse,
  a bright sphere) with a 0/1 lesion mask each, manifest ``path,mask,patient_id``.

Only a pool of distinct files is encoded (100 images, 5 volumes); the N cases are hard links to
them under distinct names. The cache keys a case by its path, so each link is its own case and is
preprocessed as such; only the reading is the same as for N distinct files (the page cache may
hold the pool's bytes, so cold-disk reads are not measured).

For each set it runs ``medsight train --data MANIFEST --minutes M --out RUN --set
data.cache_dir=CACHE`` in a subprocess on a fresh (cold) cache, then a second ``medsight train``
on the same data and cache into another run folder, and records:

- ``peak_rss_mb``: peak over the run of the summed VmRSS of the process and all its descendants
  (DataLoader workers), read from /proc every 0.2 s. Forked workers share pages with their parent,
  so the sum overcounts; ``peak_pss_mb`` (proportional set size, smaps_rollup) shares them out
  and ``peak_rss_main_mb`` is the main process alone.
- ``prep_cases_s``: cases written to the cache (train + val; test is preprocessed by ``evaluate``)
  divided by the seconds from the ``plan:`` log line (printed just before the cache is built) to
  the start of the first epoch. The start of the first epoch is the moment the first line of
  RUN/metrics.jsonl appears minus that epoch's ``seconds`` (0.2 s resolution); the interval also
  holds the model's construction, which is small beside the preprocessing of many cases.
- ``cache_mb``: size of the cache folder after the cold run (sum of file sizes, as
  ``medsight cache info`` counts them).
- ``epoch_s``: median ``seconds`` of the cold run's epochs (RUN/metrics.jsonl).
- ``rerun_first_batch_s``: seconds from the rerun's process start to the start of its first
  epoch (same method): interpreter and torch import, planning, finding every case in the cache.

Prints a table with the CPU kind; ``--json OUT`` writes ``{"rows": [{"kind", "cases",
"peak_rss_mb", "prep_cases_s", "cache_mb", "epoch_s", "rerun_first_batch_s", ...}]}``.
The two trainings of a set run one after the other, never at once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDSIGHT = Path(sys.executable).parent / "medsight"
POOL_2D = 100
POOL_3D = 5
SPACING = (0.7, 0.7, 1.5)
SAMPLE_S = 0.2
PLAN_LINE = re.compile(r"\bplan: ")


# ----------------------------------------------------------------------------- synthetic data


def write_2d(folder: Path, n: int, px: int, seed: int = 0) -> Path:
    """N px x px grey PNGs (hard links into a pool of POOL_2D) and their manifest."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pool_dir, case_dir = folder / "pool", folder / "cases"
    pool_dir.mkdir(parents=True, exist_ok=True)
    case_dir.mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:px, 0:px].astype(np.float32) / px
    pool = []
    for k in range(min(POOL_2D, n)):
        label = k % 2
        coarse = rng.uniform(40, 140, size=(8, 8)).astype(np.float32)
        background = np.asarray(Image.fromarray(coarse, mode="F").resize((px, px), Image.BICUBIC))
        image = background + rng.normal(0, 6, size=(px, px)).astype(np.float32)
        if label:
            cy, cx, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.03, 0.08)
            image += 90 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        path = pool_dir / f"pool{k:03d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L").save(path, compress_level=1)
        pool.append((path, label))
    rows = []
    for i in range(n):
        src, label = pool[i % len(pool)]
        dst = case_dir / f"case{i:06d}.png"
        os.link(src, dst)
        rows.append({"path": str(dst), "label": label, "patient_id": f"p{i:06d}"})
    return _write_manifest(folder / "manifest.csv", rows, ["path", "label", "patient_id"])


def write_3d(folder: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> Path:
    """N CT volumes with lesion masks (hard links into a pool of POOL_3D) and their manifest."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    pool_dir, case_dir = folder / "pool", folder / "cases"
    pool_dir.mkdir(parents=True, exist_ok=True)
    case_dir.mkdir(exist_ok=True)
    affine = np.diag([*SPACING, 1.0])
    x, y, z = np.ogrid[0:shape[0], 0:shape[1], 0:shape[2]]
    x, y, z = (x / shape[0]).astype(np.float32), (y / shape[1]).astype(np.float32), (z / shape[2]).astype(np.float32)
    body = ((x - 0.5) / 0.42) ** 2 + ((y - 0.5) / 0.32) ** 2 <= 1.0
    pool = []
    for k in range(min(POOL_3D, n)):
        volume = np.full(shape, -1000, np.int16)
        volume[np.broadcast_to(body, shape)] = 40
        volume += rng.normal(0, 20, size=shape).astype(np.int16)
        cx, cy, cz = rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6), rng.uniform(0.3, 0.7)
        r = rng.uniform(0.04, 0.08)  # of the in-plane extent; the lesion is a sphere in mm
        sx, sy, sz = (s * d for s, d in zip(shape, SPACING))
        lesion = ((x - cx) * sx) ** 2 + ((y - cy) * sy) ** 2 + ((z - cz) * sz) ** 2 <= (r * sx) ** 2
        volume[lesion] += 80
        mask = lesion.astype(np.uint8)
        image_path, mask_path = pool_dir / f"ct{k:02d}.nii.gz", pool_dir / f"ct{k:02d}_mask.nii.gz"
        nib.save(nib.Nifti1Image(volume, affine), image_path)
        nib.save(nib.Nifti1Image(mask, affine), mask_path)
        pool.append((image_path, mask_path))
    rows = []
    for i in range(n):
        image_path, mask_path = pool[i % len(pool)]
        dst, dst_mask = case_dir / f"case{i:05d}.nii.gz", case_dir / f"case{i:05d}_mask.nii.gz"
        os.link(image_path, dst)
        os.link(mask_path, dst_mask)
        rows.append({"path": str(dst), "mask": str(dst_mask), "patient_id": f"p{i:05d}"})
    return _write_manifest(folder / "manifest.csv", rows, ["path", "mask", "patient_id"])


def _write_manifest(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------- measuring


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/<pid>/stat (comm may hold spaces and parentheses)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _status_kb(pid: int, field: str, file: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{file}") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory(root: int) -> tuple[int, int, int]:
    """(summed VmRSS, summed Pss, the root's VmRSS) in kB of ``root`` and all its descendants."""
    tree, pids, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, []))
    rss = sum(_status_kb(p, "VmRSS:") for p in pids)
    pss = sum(_status_kb(p, "Pss:", "smaps_rollup") for p in pids)
    return rss, pss, _status_kb(root, "VmRSS:")


def run_train(manifest: Path, run_dir: Path, cache: Path, minutes: float, log_path: Path) -> dict:
    """One ``medsight train`` in a subprocess, sampled every SAMPLE_S seconds."""
    cmd = [str(MEDSIGHT), "train", "--data", str(manifest), "--minutes", str(minutes), "--out", str(run_dir),
           "--set", f"data.cache_dir={cache}"]
    history = run_dir / "metrics.jsonl"
    peak = {"rss": 0, "pss": 0, "main": 0}
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, cwd=run_dir.parent)

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:  # text mode: tqdm's carriage returns end lines too
                if "plan" not in marks and PLAN_LINE.search(line):
                    marks["plan"] = time.perf_counter() - t0
                log.write(line if line.endswith("\n") else line + "\n")

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        while proc.poll() is None:
            rss, pss, main = tree_memory(proc.pid)
            peak = {"rss": max(peak["rss"], rss), "pss": max(peak["pss"], pss), "main": max(peak["main"], main)}
            if "first_line" not in marks and history.is_file() and history.stat().st_size:
                marks["first_line"] = time.perf_counter() - t0
            time.sleep(SAMPLE_S)
        wall = time.perf_counter() - t0
        reader.join(timeout=10)
    if proc.returncode != 0:
        tail = log_path.read_text().splitlines()[-15:]
        raise RuntimeError(f"medsight train failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    first_line = marks.get("first_line", wall)  # a one-epoch run may end between two samples
    train_start = first_line - float(rows[0]["seconds"])
    return {"wall_s": wall, "plan_s": marks.get("plan"), "train_start_s": train_start, "epochs": rows,
            "peak_rss_mb": peak["rss"] / 1024, "peak_pss_mb": peak["pss"] / 1024,
            "peak_rss_main_mb": peak["main"] / 1024}


def cache_entries(cache: Path) -> tuple[int, float]:
    """(complete entries, MB on disk as summed file sizes) of a cache folder."""
    files = [f for f in cache.rglob("*") if f.is_file()]
    entries = sum(f.suffix == ".json" and f.name != "settings.json" for f in files)
    return entries, sum(f.stat().st_size for f in files) / 2**20


def measure(kind: str, manifest: Path, cases: int, work: Path, minutes: float) -> dict:
    cache, stem = work / f"cache-{kind}-{cases}", f"{kind}-{cases}"
    shutil.rmtree(cache, ignore_errors=True)  # cold
    print(f"[{kind}, {cases} cases] cold run ...", flush=True)
    cold = run_train(manifest, work / f"run-{stem}", cache, minutes, work / f"train-{stem}.log")
    entries, cache_mb = cache_entries(cache)
    print(f"[{kind}, {cases} cases] rerun on the warm cache ...", flush=True)
    warm = run_train(manifest, work / f"run-{stem}-rerun", cache, minutes, work / f"train-{stem}-rerun.log")
    prep_s = cold["train_start_s"] - cold["plan_s"] if cold["plan_s"] is not None else None
    plan = json.loads((work / f"run-{stem}" / "plan.json").read_text())
    planned = plan.get("planned", {})
    return {
        "kind": kind, "cases": cases,
        "peak_rss_mb": round(cold["peak_rss_mb"], 1),
        "prep_cases_s": round(entries / prep_s, 2) if prep_s and prep_s > 0 else None,
        "cache_mb": round(cache_mb, 1),
        "epoch_s": round(statistics.median(r["seconds"] for r in cold["epochs"]), 2),
        "rerun_first_batch_s": round(warm["train_start_s"], 2),
        # more detail
        "peak_pss_mb": round(cold["peak_pss_mb"], 1), "peak_rss_main_mb": round(cold["peak_rss_main_mb"], 1),
        "rerun_peak_rss_mb": round(warm["peak_rss_mb"], 1),
        "cached_cases": entries, "prep_s": round(prep_s, 2) if prep_s is not None else None,
        "cold_first_batch_s": round(cold["train_start_s"], 2), "cold_plan_s": _round(cold["plan_s"]),
        "rerun_plan_s": _round(warm["plan_s"]),
        "epochs": len(cold["epochs"]),
        "train_images_per_second": statistics.median(r.get("train_images_per_second", 0) for r in cold["epochs"]),
        "cold_wall_s": round(cold["wall_s"], 1), "rerun_wall_s": round(warm["wall_s"], 1),
        "input_shape": plan.get("input_shape"), "spatial_size": planned.get("transforms.spatial_size"),
        "patch_size": planned.get("segmentation.patch_size"), "n_items": plan.get("n_items"),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes-2d", default="1000,5000,20000", help="2D set sizes (empty: none)")
    p.add_argument("--volumes", default="20,100", help="3D set sizes (empty: none)")
    p.add_argument("--px", type=int, default=1024, help="2D image side")
    p.add_argument("--ct-shape", default="512,512,300", help="3D volume shape x,y,z")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per run")
    p.add_argument("--work", type=Path, help="where data, caches and runs go (default: a temp folder in /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)

    from medsight.runtime import cpu_description

    sizes_2d, sizes_3d, ct_shape = _ints(args.sizes_2d), _ints(args.volumes), tuple(_ints(args.ct_shape))
    if len(ct_shape) != 3:
        p.error("--ct-shape takes three integers, e.g. 512,512,300")
    base = Path(tempfile.mkdtemp(prefix="medsight-scale-", dir="/tmp")) if args.work is None else args.work
    work = base / "scale-bench"
    work.mkdir(parents=True, exist_ok=True)
    cpu = cpu_description()
    rows = []
    try:
        for n in sizes_2d:
            t = time.perf_counter()
            manifest = write_2d(work / f"data-2d-{n}", n, args.px)
            print(f"[2d, {n} cases] wrote {args.px}x{args.px} PNGs in {time.perf_counter() - t:.1f} s", flush=True)
            rows.append({**measure("2d", manifest, n, work, args.minutes), "px": args.px})
            print_table(rows, cpu, args)
        for n in sizes_3d:
            t = time.perf_counter()
            manifest = write_3d(work / f"data-3d-{n}", n, ct_shape)  # type: ignore[arg-type]
            print(f"[3d, {n} cases] wrote {'x'.join(map(str, ct_shape))} volumes in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
            rows.append({**measure("3d", manifest, n, work, args.minutes), "ct_shape": list(ct_shape)})
            print_table(rows, cpu, args)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if args.work is None:
                shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cpu": cpu, "cores": os.cpu_count(),
                                         "minutes": args.minutes}, indent=2) + "\n")
    return 0


def print_table(rows: list[dict], cpu: dict, args: argparse.Namespace) -> None:
    print(f"\nScale: medsight train --data MANIFEST --minutes {args.minutes:g} (cold cache, then a rerun) on "
          f"{cpu['model']} (native bf16: {cpu['bf16_native']}), {os.cpu_count()} cores")
    head = ("kind", "cases", "peak RSS MB", "prep cases/s", "cache MB", "epoch s", "rerun 1st batch s", "input")
    print(f"{head[0]:<5}{head[1]:>7}{head[2]:>13}{head[3]:>14}{head[4]:>10}{head[5]:>9}{head[6]:>19}  {head[7]}")
    for r in rows:
        shape = r.get("patch_size") or r.get("spatial_size") or r.get("input_shape")
        prep = f"{r['prep_cases_s']:.1f}" if r["prep_cases_s"] is not None else "n/a"
        print(f"{r['kind']:<5}{r['cases']:>7}{r['peak_rss_mb']:>13.0f}{prep:>14}{r['cache_mb']:>10.1f}"
              f"{r['epoch_s']:>9.1f}{r['rerun_first_batch_s']:>19.1f}  {shape}")
    print("(peak RSS: the process tree's summed VmRSS; PSS and main-process figures are in --json)\n")


if __name__ == "__main__":
    sys.exit(main())
