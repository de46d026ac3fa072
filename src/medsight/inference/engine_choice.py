"""The engine predict uses by default: the fastest on this CPU that changes no decision.

The candidates are the PyTorch model in fp32 (the reference) and, where they apply, in bf16
(CPUs with native bf16 only), and the run's ONNX export under ONNX Runtime (fp32, or int8 when
``export --quantize int8`` passed its check) and under OpenVINO (``medsight[openvino]``).
``choose_engine`` runs each on the validation split, counts the decisions that differ from
fp32 PyTorch's (label at the run's threshold), times them alternately, and writes the fastest
that changes none to ``RUN/engine.json`` with every candidate's figures and the CPU kind. It
runs at the end of training and again after ``medsight export``.

``load_run`` follows the record only on the same CPU kind and checkpoint, and only if that
engine is still allowed (``MEDSIGHT_PRECISION=fp32`` rules out the bf16 ones): bf16 and int8
kernels round differently on AVX2, AVX-512 and AMX, so a choice checked on one kind says
nothing about another. Otherwise it falls back to the ONNX export if there is one, else PyTorch.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from medsight.inference.calibration import calibrated_softmax
from medsight.inference.engine import OnnxEngine, OpenVinoEngine, exported_model, file_sha256
from medsight.runtime import cpu_kind
from medsight.runtime.engine import Engine, TorchEngine, run_batches
from medsight.runtime.run_folder import RunFolder, checkpoint_path
from medsight.utils.atomic import write_json
from medsight.utils.extras import available

if TYPE_CHECKING:
    from medsight.inference.load import LoadedRun

log = logging.getLogger(__name__)
REFERENCE = "pytorch-fp32"
TIMING_IMAGES, TIMING_ROUNDS = 128, 3


def candidates(run: "LoadedRun") -> dict[str, Callable[[], Engine]]:
    """The engines this run may use on this CPU, by name, each built when called."""
    rt = run.runtime
    fp32 = replace(rt, bf16=False, channels_last=False)
    found: dict[str, Callable[[], Engine]] = {REFERENCE: lambda: TorchEngine(run.model, fp32)}
    if rt.bf16:
        found["pytorch-bf16"] = lambda: TorchEngine(run.model, rt)
    onnx = exported_model(run.run_dir, checkpoint_path(run.run_dir))
    if onnx is not None:
        quantized = _export_precision(run) == "int8"
        name = "onnxruntime-int8" if quantized else "onnxruntime"
        found[name] = lambda: OnnxEngine(onnx, rt.threads, name)
        if available("openvino") and not quantized:
            found[f"openvino-{rt.precision}"] = lambda: OpenVinoEngine(onnx, rt.threads, rt.bf16)
    return found


def choose_engine(run: "LoadedRun", images: torch.Tensor) -> dict:
    """Check and time every candidate on ``images`` (the validation split); write and return
    ``engine.json``."""
    engines = {name: build() for name, build in candidates(run).items()}
    reference = _decisions(run, run_batches(engines[REFERENCE], images))
    sample = images[:TIMING_IMAGES]
    for engine in engines.values():  # warm-up: kernel choice, graph compilation
        run_batches(engine, sample[:8])
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(TIMING_ROUNDS):  # alternate, so machine noise falls on all alike
        for name, engine in engines.items():
            t0 = time.perf_counter()
            run_batches(engine, sample)
            times[name].append(len(sample) / max(time.perf_counter() - t0, 1e-9))
    report = {}
    for name, engine in engines.items():
        flips = 0 if name == REFERENCE else int((_decisions(run, run_batches(engine, images)) != reference).sum())
        report[name] = {"images_per_second": round(statistics.median(times[name]), 1), "flips": flips}
    kept = [n for n in report if report[n]["flips"] == 0]
    chosen = max(kept, key=lambda n: report[n]["images_per_second"])
    record = {"engine": chosen, "cpu_kind": cpu_kind(), "validation_cases": len(images),
              "checkpoint_sha256": file_sha256(checkpoint_path(run.run_dir)), "candidates": report,
              "rule": "the fastest engine whose decisions on the validation split all equal fp32 PyTorch's"}
    write_json(RunFolder(run.run_dir).engine, record)
    speedup = report[chosen]["images_per_second"] / max(report[REFERENCE]["images_per_second"], 1e-9)
    log.info("engine on this CPU (%s): %s, %.1fx fp32 PyTorch, no validation decision changed (%s)",
             record["cpu_kind"], chosen, speedup,
             ", ".join(f"{n}: {r['flips']} changed" for n, r in report.items() if r["flips"]) or "none of "
             f"{len(report)} candidates changed any")
    return record


def recorded_engine(run: "LoadedRun") -> Engine | None:
    """The engine ``engine.json`` chose, when it was chosen on this CPU kind for this checkpoint
    and is still a candidate here; else None (the caller falls back)."""
    path = RunFolder(run.run_dir).engine
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        name = record["engine"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        log.warning("%s is unreadable; choosing the engine as if it were absent", path)
        return None
    if record.get("cpu_kind") != cpu_kind():
        log.info("%s was chosen on another CPU kind (%s, this is %s); run `medsight export` or "
                 "`medsight calibrate` here to choose again", path, record.get("cpu_kind"), cpu_kind())
        return None
    if record.get("checkpoint_sha256") != file_sha256(checkpoint_path(run.run_dir)):
        return None
    build = candidates(run).get(name)
    return build() if build is not None else None


def _decisions(run: "LoadedRun", logits: torch.Tensor) -> np.ndarray:
    """Each case's label index as predict decides it (binary: at the run's threshold)."""
    probs = calibrated_softmax(logits.float(), run.temperature()).numpy()
    if probs.shape[1] == 2:
        return (probs[:, 1] >= run.threshold()).astype(np.int64)
    return probs.argmax(1)


def _export_precision(run: "LoadedRun") -> str:
    try:
        return str(json.loads(RunFolder(run.run_dir).export.read_text()).get("precision", "fp32"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return "fp32"
