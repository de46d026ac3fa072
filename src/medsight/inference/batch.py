"""``medsight predict`` over many inputs: streamed, in parallel, resumable.

- Streaming with bounded memory: at most ``workers * PREFETCH`` images are read ahead;
  results go to ``OUT/predictions.jsonl`` batch by batch, never all held until the end.
- Several workers: reading and preprocessing run in worker processes while the main
  process runs the model (the engine: PyTorch or the ONNX export) on whole batches.
- Resumable: an input already in ``predictions.jsonl`` with the same size and modification
  time is skipped, so a killed or interrupted job continues where it stopped.
- Bad files do not stop the job: each is listed (one line, naming the file) and the rest done.
- Audited when given a database (``audit_db``): a row per prediction and per refused file
  (``inference/audit.py``); inputs resumed from an earlier run are not predicted again.
At the end ``predictions.json`` (all records, in input order) and ``summary.json`` are written.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from medsight.errors import ConfigError, InputFileError, MedsightError
from medsight.inference.audit import AuditTrail, cli_caller, input_sha256
from medsight.inference.explain import METHODS, explain
from medsight.inference.guard import apply_fields, check_image, ood_fields
from medsight.inference.load import LoadedRun, load_run
from medsight.inference.overlay import overlay_png
from medsight.inference.predict import check_single_image, diagnose, expand_inputs, model_input
from medsight.inference.similar import open_index, similar_cases
from medsight.io import read_image
from medsight.store.db import Database
from medsight.utils.atomic import write_bytes, write_json
from medsight.utils.paths import safe_stem

log = logging.getLogger(__name__)
PREDICTIONS_FILE, JOURNAL_FILE, SUMMARY_FILE = "predictions.json", "predictions.jsonl", "summary.json"
PREFETCH = 8  # images read ahead per worker
PARALLEL_FROM = 64  # fewer inputs than this are read in the main process (worker start-up ~3 s)


@dataclass
class BatchReport:
    results: list[dict]
    failures: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0  # inputs found done by an earlier run
    seconds: float = 0.0
    engine: str = ""  # the engine that ran the model (inference/engine_choice.py)


def predict_paths(run_dir: Path, inputs: Sequence[Path], out_dir: Path, heatmaps: bool = True,
                  method: str = "gradcam", workers: int | None = None, batch_size: int = 32,
                  fail_fast: bool = False, tta: bool = False, audit_db: Database | None = None,
                  caller: str | None = None, allow_foreign: bool = False, similar: int = 0,
                  index: Path | None = None) -> BatchReport:
    """Predict every input into ``out_dir``; see the module docstring. ``fail_fast`` raises
    the first bad file's error instead of listing it (``--debug``); ``tta`` averages the
    calibrated probabilities over test-time views (``inference/tta.py``); ``audit_db`` records
    each prediction for ``caller`` (default ``cli:USER``). Foreign inputs (``inference/guard.py``)
    are refused like bad files, unless ``allow_foreign``: then predicted and marked. ``similar``:
    each record also lists the K most similar cases of the ``index`` folder (``inference/similar.py``)."""
    t0 = time.perf_counter()
    if heatmaps and method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose {', '.join(METHODS)}")
    run = load_run(run_dir)
    check_single_image(run)  # runs on several images or clinical values take --cases (cases.py)
    neighbours = open_index(run, similar, index)
    out_dir = Path(out_dir)
    paths = expand_inputs(list(inputs), run.spatial_dims)
    journal = Journal(out_dir / JOURNAL_FILE)
    todo = [(i, p) for i, p in enumerate(paths) if not _done(journal.get(p), tta)]
    if len(todo) < len(paths):
        log.info("resuming: %d of %d inputs already done in %s", len(paths) - len(todo), len(paths), out_dir)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(todo) >= PARALLEL_FROM else 0
    failures: list[tuple[str, str]] = []
    trail = AuditTrail(audit_db, run) if audit_db is not None else None
    bar = tqdm(total=len(todo), desc="predict", unit="image", disable=None)
    for chunk in _batches(_loaded(run, todo, workers), batch_size):
        started = time.perf_counter()
        chunk = _screened(run, chunk, allow_foreign)
        if fail_fast and any(x is None for _, _, x, _ in chunk):
            _, p, _, problem = next(c for c in chunk if c[2] is None)
            raise InputFileError(p, problem)
        good = [(i, p, x, meta) for i, p, x, meta in chunk if x is not None]
        failures += [(str(p), meta) for _, p, x, meta in chunk if x is None]
        if good:
            x = torch.from_numpy(np.stack([g[2] for g in good]))
            records = [_record(run, i, p, xi, meta, d, out_dir, heatmaps, method)
                       for (i, p, xi, meta), d in zip(good, diagnose(run, x, tta))]
            if neighbours is not None:
                for record, cases in zip(records, similar_cases(run, neighbours, x, similar)):
                    record["similar"] = cases
            journal.append([(p, r) for (_, p, _, _), r in zip(good, records)])
        if trail is not None:
            _audit(trail, caller or cli_caller(), chunk, iter(records if good else []),
                   (time.perf_counter() - started) / len(chunk), tta)
        bar.update(len(chunk))
    bar.close()
    results = [journal.get(p) for p in paths]
    results = [r for r in results if r is not None]
    write_json(out_dir / PREDICTIONS_FILE, results)
    report = BatchReport(results, failures, len(paths) - len(todo), time.perf_counter() - t0, run.engine.name)
    write_json(out_dir / SUMMARY_FILE, {**summary(report, len(paths)), "engine": run.engine.name,
                                        "tta_views": [v.name for v in run.views(tta)] if tta else None})
    done = max(len(todo), 1)
    log.debug("predicted %d image(s) into %s (%d failed, %d resumed) in %.1f s, %.0f ms per image", len(results),
             out_dir, len(failures), report.resumed, report.seconds, 1000 * report.seconds / done)
    return report


def _screened(run: LoadedRun, chunk: list[tuple], allow_foreign: bool) -> list[tuple]:
    """The chunk after the input guard: a refused input becomes a failure with its reason; the
    others carry the guard's fields (``out_of_distribution``, ``ood_score``) in their metadata."""
    chunk = [(i, p, None, meta["foreign"])  # refused: foreign, and not allowed or unreadable by the model
             if isinstance(meta, dict) and meta.get("foreign") and (x is None or not allow_foreign)
             else (i, p, x, meta) for i, p, x, meta in chunk]
    good = [k for k, c in enumerate(chunk) if c[2] is not None]
    if not good:
        return chunk
    verdicts = ood_fields(run, torch.from_numpy(np.stack([chunk[k][2] for k in good])),
                          [chunk[k][3].pop("foreign", None) for k in good], allow_foreign,
                          [chunk[k][3].pop("caveat", None) for k in good])
    for k, verdict in zip(good, verdicts):
        i, p, x, meta = chunk[k]
        chunk[k] = (i, p, None, verdict) if isinstance(verdict, str) else (i, p, x, {**meta, **verdict})
    return chunk


def _audit(trail: AuditTrail, caller: str, chunk: list[tuple], records: Iterator[dict], seconds: float,
           tta: bool) -> None:
    """A row per input of a batch: its prediction, or its refusal with the problem (never its name)."""
    for _, path, x, meta in chunk:
        if x is None:
            trail.refusal(caller, input_sha256(path), meta, seconds, tta)
        else:
            trail.prediction(caller, input_sha256(path), next(records), seconds, tta)


def _done(record: dict | None, tta: bool) -> bool:
    """An input is done if an earlier run predicted it the same way (with or without TTA)."""
    return record is not None and bool(record.get("tta", False)) == tta


def summary(report: BatchReport, n_inputs: int) -> dict:
    return {"inputs": n_inputs, "predicted": len(report.results), "failed": len(report.failures),
            "resumed": report.resumed, "seconds": round(report.seconds, 2),
            "labels": dict(Counter(r["label"] for r in report.results)),
            "needs_review": sum(bool(r.get("needs_review")) for r in report.results),
            "out_of_distribution": sum(bool(r.get("out_of_distribution")) for r in report.results),
            "failures": [{"input": p, "problem": m} for p, m in report.failures]}


def _record(run: LoadedRun, index: int, path: Path, x: np.ndarray, meta: dict, diagnosis: dict,
            out_dir: Path, heatmaps: bool, method: str) -> dict:
    record = apply_fields({"input": str(path), **diagnosis, **meta, "heatmap": None, "heatmap_method": None}, meta)
    if heatmaps:
        xt = torch.from_numpy(x)
        heat = explain(run.model, run.cfg.model.name, run.runtime.batch(xt[None])[0], record["label_index"], method)
        png = out_dir / "heatmaps" / f"{index:04d}_{safe_stem(path)}.png"
        caption = f"{record['label']} ({record['probabilities'][record['label']]:.2f})"
        write_bytes(png, overlay_png(x, heat, caption))
        record["heatmap"], record["heatmap_method"] = str(png), method
    return record


# --- reading ahead ----------------------------------------------------------------------

_worker_run: LoadedRun | None = None


def _load_one(path: Path, run: LoadedRun | None = None) -> tuple[np.ndarray | None, dict | str]:
    """(model-space image, metadata) or (None, one-line problem); never raises on bad input.

    ``metadata["foreign"]``: why the input guard refuses the image (None if it does not); an
    image the model cannot read at all then comes back as (None, {"foreign": reason})."""
    run = run or _worker_run
    foreign = None
    try:
        image = read_image(path)
        foreign, caveat = check_image(run, image, str(path), allow_foreign=True)
        return model_input(run, image).numpy(), {"modality": image.meta.get("modality"),
                                                  "shape": list(image.shape[1:]), "foreign": foreign,
                                                  "caveat": caveat}
    except MedsightError as exc:
        return None, {"foreign": foreign} if foreign else getattr(exc, "problem", str(exc))


def _init_worker(run_dir: str) -> None:
    global _worker_run
    torch.set_num_threads(1)
    _worker_run = load_run(run_dir, prefer_onnx=False)


def _loaded(run: LoadedRun, todo: list[tuple[int, Path]], workers: int) -> Iterator[tuple]:
    """(index, path, image or None, metadata or problem) in input order, read ahead."""
    if workers <= 0:
        for i, p in todo:
            yield (i, p, *_load_one(p, run))
        return
    # spawn, not fork: a forked child of a process with OpenMP threads can deadlock
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(str(run.run_dir),)) as pool:
        pending: deque[tuple[int, Path, Future]] = deque()
        items = iter(todo)
        for i, p in items:
            pending.append((i, p, pool.submit(_load_one, p)))
            if len(pending) >= workers * PREFETCH:
                break
        while pending:
            i, p, fut = pending.popleft()
            yield (i, p, *fut.result())
            nxt = next(items, None)
            if nxt is not None:
                pending.append((nxt[0], nxt[1], pool.submit(_load_one, nxt[1])))


def _batches(items: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- the resumable journal --------------------------------------------------------------

class Journal:
    """``predictions.jsonl``: one record per line, keyed by the input and its size and mtime.

    A line torn by a kill is dropped when the journal is opened; every batch is fsynced, so
    at most the batch being written when the process died is done again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            kept = []
            for line in lines:
                try:
                    entry = json.loads(line)
                    self.records[entry["key"]] = entry["record"]
                    kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            if len(kept) != len(lines):
                write_bytes(path, ("".join(k + "\n" for k in kept)).encode())

    @staticmethod
    def key(path: Path) -> str:
        st = Path(path).stat()  # a series folder's mtime changes when files come or go
        return f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def get(self, path: Path) -> dict | None:
        return self.records.get(self.key(path))

    def append(self, entries: list[tuple[Path, dict]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for path, record in entries:
            key = self.key(path)
            self.records[key] = record
            lines.append(json.dumps({"key": key, "record": record}) + "\n")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
