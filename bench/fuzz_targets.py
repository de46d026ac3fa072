"""What ``bench/fuzz.py`` runs each case through, inside long-lived worker processes.

A target is a function ``(case, scratch) -> Outcome``. Library entry points are called here
directly (a fresh process per case would cost seconds of imports each): ``read_image``,
``predict_paths`` against a small trained run, ``deidentify_tree``, and the service's
``POST /v1/predict`` (the app in-process, through FastAPI's ``TestClient``). The command line
is checked separately, in subprocesses, by ``fuzz.py`` itself.

The service answers an upload, not a file of the client's: its refusals (4xx) must be one
line of JSON ``detail`` naming the problem; any 5xx is a crash.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import shutil
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

KEY = b"medsight-fuzz-key-0123456789abcdef"
# Address-space ceiling per worker: a reader that allocates what a bomb's header claims fails
# here with MemoryError (counted as a crash) instead of taking the shared machine down.
ADDRESS_SPACE_LIMIT = 8 * 2**30


@dataclass
class Outcome:
    """``accepted``, ``refused`` (a MedsightError, or a failure listed in a report), ``crash``, or
    ``skipped`` (the target cannot take this kind of case, e.g. a folder as an upload)."""

    status: str
    messages: list[str] = field(default_factory=list)  # refusal lines, or the crash's summary
    unclear: list[str] = field(default_factory=list)  # refusal lines that fail the one-line rule


def clear_refusal(message: str, case_path: Path) -> bool:
    """One line, naming the case's file (or a file inside the case's folder), then a problem."""
    if "\n" in message or "Traceback" in message:
        return False
    name = str(case_path)
    at = message.find(name)
    return at >= 0 and len(message[at + len(name):].lstrip(":/ ").strip()) > 3


def _refused(messages: list[str], case_path: Path) -> Outcome:
    return Outcome("refused", messages, [m for m in messages if not clear_refusal(m, case_path)])


def _guarded(target: Callable[[Path, Path], Outcome]) -> Callable[[Path, Path], Outcome]:
    """Turn a MedsightError into a refusal and anything else into a crash (with its origin)."""
    from medsight.errors import MedsightError

    @functools.wraps(target)
    def run(case_path: Path, scratch: Path) -> Outcome:
        try:
            return target(case_path, scratch)
        except MedsightError as exc:
            return _refused([str(exc)], case_path)
        except BaseException as exc:  # noqa: BLE001 - the point is to catch everything
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
            return Outcome("crash", [f"{type(exc).__name__}: {str(exc)[:300]} at {where}"])

    return run


def target_read_image(case_path: Path, scratch: Path) -> Outcome:
    from medsight.io import read_image

    image = read_image(case_path)
    return Outcome("accepted", [f"shape {tuple(image.shape)}"])


def target_predict(case_path: Path, scratch: Path) -> Outcome:
    from medsight.inference.batch import predict_paths

    report = predict_paths(RUN_DIR, [case_path], scratch / "predict", heatmaps=True, fail_fast=True)
    return Outcome("accepted", [f"{len(report.results)} prediction(s)"])


def target_deid(case_path: Path, scratch: Path) -> Outcome:
    from medsight.privacy.deid import DeidOptions, deidentify_tree

    report = deidentify_tree(case_path, scratch / "deid", DeidOptions(key=KEY))
    if report.failures:
        return _refused([f"{source}: {problem}" for source, problem in report.failures], case_path)
    return Outcome("accepted", [f"{report.n_ok} file(s)"])


SERVICE_KEY = "fuzz-service-key-0123456789"


@functools.lru_cache(maxsize=None)
def _service_client():
    from fastapi.testclient import TestClient

    from medsight.service.app import create_app
    from medsight.service.models import load_registry
    from medsight.service.settings import ServiceSettings

    app = create_app(load_registry([f"fuzz={RUN_DIR}"]), ServiceSettings(api_key=SERVICE_KEY, workers=1))
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()  # start-up (the model pool) once per worker; the worker's exit ends it
    return client


def target_service(case_path: Path, scratch: Path) -> Outcome:
    if not case_path.is_file():
        return Outcome("skipped", ["not a file: nothing to upload"])  # folders, pipes, loops
    with open(case_path, "rb") as fh:
        response = _service_client().post("/v1/predict", files={"file": ("upload", fh)},
                                          headers={"X-API-Key": SERVICE_KEY})
    if response.status_code >= 500:
        return Outcome("crash", [f"HTTP {response.status_code}: {response.text[:300]}"])
    if response.status_code >= 400:
        try:
            detail = str(response.json().get("detail", ""))
        except ValueError:
            detail = ""
        clear = bool(detail.strip()) and "\n" not in detail and "Traceback" not in detail
        message = f"HTTP {response.status_code}: {detail or response.text[:200]}"
        return Outcome("refused", [message], [] if clear else [message])
    return Outcome("accepted", [f"HTTP {response.status_code}: {response.json().get('label')}"])


TARGETS: dict[str, Callable[[Path, Path], Outcome]] = {
    "read_image": target_read_image,
    "predict": target_predict,
    "deid": target_deid,
    "service": target_service,
}
RUN_DIR = Path()  # set by the worker: the trained run predict uses


def peak_rss_mb(reset: bool = False) -> float:
    """This process's peak resident memory (VmHWM) in MB; ``reset`` starts a new peak."""
    if reset:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_main(conn, run_dir: str, targets: list[str], scratch_root: str) -> None:
    """Serve cases from ``conn``: receive (seed, index), send back the case's results."""
    import torch
    from tqdm import tqdm

    from fuzz_corpus import build_case
    from medsight.inference import batch, load, predict

    global RUN_DIR
    RUN_DIR = Path(run_dir)
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    torch.set_num_threads(1)
    # tqdm's default lock is a multiprocessing one, which a killed worker would leave behind.
    tqdm.set_lock(threading.RLock())
    warnings.simplefilter("ignore")  # warnings are the CLI's concern: checked there
    logging.disable(logging.CRITICAL)
    # Loading the run is not under test and would dominate: load it once per worker.
    predict.load_run = batch.load_run = functools.lru_cache(maxsize=None)(load.load_run)
    guarded = {name: _guarded(TARGETS[name]) for name in targets}
    root = Path(scratch_root) / f"worker{os.getpid()}"
    while True:
        job = conn.recv()
        if job is None:
            break
        seed, index = job
        folder = root / f"case{index}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        case = build_case(seed, index, folder)
        peak_rss_mb(reset=True)
        started, cpu_started = time.monotonic(), time.process_time()
        results = {}
        for name, target in guarded.items():
            (folder / name).mkdir()
            outcome = target(case.path, folder / name)
            results[name] = (outcome.status, outcome.messages[:5], outcome.unclear[:3])
        conn.send({"index": index, "family": case.family, "detail": case.detail, "results": results,
                   "peak_mb": peak_rss_mb(), "seconds": time.monotonic() - started,
                   "cpu_seconds": time.process_time() - cpu_started})
        shutil.rmtree(folder, ignore_errors=True)
