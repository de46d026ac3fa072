"""``medsight export RUN --format onnx``: the best checkpoint as ``RUN/model.onnx``.

The export is checked before it is kept: ONNX Runtime's logits on a random batch must match
PyTorch's (fp32) within ``TOLERANCE``; ``RUN/export.json`` records the checkpoint's hash, so
a model retrained later never silently runs with a stale export.

``--quantize int8`` adds ONNX Runtime's static int8 quantisation (per-channel weights,
activations calibrated on training images): several times faster again on CPUs with int8
dot-product instructions. It is validated on the run's validation split (``int8_check``) and
refused when it moves the AUC by more than ``INT8_MAX_AUC_CHANGE``, flips more than
``INT8_MAX_FLIPS`` of the decisions, or flips a single decision that fp32 made with a margin
of more than ``INT8_BORDERLINE``; the figures go into ``export.json``.

Why both flip rules: int8 kernels round differently on each ISA (AVX2, VNNI, AMX), so a
case that fp32 puts at 0.49 may land at 0.51; such a borderline case is one a clinical
workflow refers for review anyway. A confident decision that changes is a different model.

After an export, the engine predict uses is chosen again (``engine_choice.py``): the export's
engines join the candidates, and the fastest that changes no validation decision is kept.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from medsight.errors import ConfigError, MedsightError
from medsight.inference.engine import EXPORT_FILE, ONNX_FILE, OnnxEngine, file_sha256
from medsight.inference.engine_choice import choose_engine
from medsight.inference.load import load_run
from medsight.runtime.checkpoint import BEST
from medsight.runtime.engine import run_batches
from medsight.runtime.ensemble_folder import run_task
from medsight.runtime.run_folder import checkpoint_path
from medsight.tasks import CLASSIFICATION, require_command
from medsight.utils.atomic import atomic_path, write_json
from medsight.utils.extras import require

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
FORMATS = ("onnx",)
QUANTIZE = (None, "int8")
TOLERANCE = 1e-4
OPSET = 17
INT8_MAX_AUC_CHANGE, INT8_MAX_FLIPS = 0.01, 0.02
INT8_BORDERLINE = 0.1  # a flipped decision is borderline when fp32's margin to the boundary was within this
CALIBRATION_IMAGES = 256


def export_run(run_dir: str | Path, fmt: str = "onnx", quantize: str | None = None) -> Path:
    """Export the run's best model; return the written file."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantisation {quantize!r}; choose int8 (or none)")
    require("onnx", "onnxruntime", extra="onnx", feature="medsight export")
    run_dir = Path(run_dir)
    kind = run_task(run_dir)
    if kind.hint:  # a pretrain run: one line saying to fine-tune it first
        require_command(kind, "export", run_dir)
    if not kind.exports:  # RetinaNet's per-level head maps are not wired to an ONNX engine (yet)
        raise ConfigError(f"{run_dir}: {kind.name} export is not supported; predict, evaluate and serve run "
                          f"{kind.name} models in PyTorch")
    run = load_run(run_dir, prefer_onnx=False)
    if run.clinical is not None:  # two inputs (images + table): not wired through export and engines yet
        raise ConfigError(f"{run_dir}: export of runs fused with clinical columns is not supported yet; "
                          "predict, evaluate and serve run them in PyTorch")
    model = copy.deepcopy(run.model).float().to(memory_format=torch.contiguous_format).eval()
    shape = [int(run.plan["in_channels"]), *map(int, run.plan["input_shape"])]
    onnx_bytes = to_onnx(model, shape)
    out = run_dir / ONNX_FILE
    meta = {"format": fmt, "file": ONNX_FILE, "opset": OPSET, "precision": quantize or "fp32",
            "checkpoint": BEST, "checkpoint_sha256": file_sha256(checkpoint_path(run_dir, BEST)),
            "input_shape": ["batch", *shape]}
    with atomic_path(out) as tmp:
        tmp.write_bytes(onnx_bytes)
        diff = max_difference(model, OnnxEngine(tmp, run.runtime.threads), shape)
        if diff > TOLERANCE:
            raise MedsightError(f"{run_dir}: the ONNX export differs from PyTorch by {diff:.2e} "
                                f"(more than {TOLERANCE:g}); not written")
        meta["max_abs_difference"] = diff
        needed = ("train", "val") if quantize == "int8" else ("val",) if kind is CLASSIFICATION else ()
        splits = run.prepared_splits(needed) if needed else {}
        if quantize == "int8":
            meta["int8_validation"] = _quantize_int8(run, tmp, splits["train"], splits["val"])
    write_json(run_dir / EXPORT_FILE, meta)
    log.info("exported %s (%s; max |ONNX - PyTorch| = %.1e)", out, meta["precision"], diff)
    if kind is CLASSIFICATION:  # which engine predict uses, now that the export is one of them
        choose_engine(run, splits["val"].images)
    return out


def to_onnx(model: torch.nn.Module, shape: list[int]) -> bytes:
    """``model`` (fp32, eval) as ONNX bytes for inputs ``(batch, *shape)``, the batch dynamic."""
    example = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python control flow in MONAI nets
        torch.onnx.export(model, (example,), buf, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def quantize_onnx_int8(src: Path, dst: Path, calibration: "np.ndarray") -> None:
    """Static int8 quantisation (QDQ, per-channel weights) of ``src`` into ``dst``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    pre = dst.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)


def _quantize_int8(run, onnx_path: Path, train, val) -> dict:
    """Quantise ``onnx_path`` in place, calibrated on training images and checked on val."""
    q = onnx_path.with_suffix(".int8.onnx")
    try:
        quantize_onnx_int8(onnx_path, q, train.images[:CALIBRATION_IMAGES].numpy())
        p32 = torch.softmax(run_batches(OnnxEngine(onnx_path, run.runtime.threads), val.images), 1).numpy()
        p8 = torch.softmax(run_batches(OnnxEngine(q, run.runtime.threads), val.images), 1).numpy()
        report, problem = int8_check(val.labels.numpy(), p32, p8, run.threshold() if p32.shape[1] == 2 else None)
        if problem:
            raise MedsightError(f"{run.run_dir}: int8 quantisation changes the model too much on the "
                                f"validation split ({problem}); not written")
        os.replace(q, onnx_path)
        return report
    finally:
        q.unlink(missing_ok=True)


def int8_check(y: "np.ndarray", p32: "np.ndarray", p8: "np.ndarray",
               threshold: float | None = None) -> tuple[dict, str | None]:
    """Compare int8 with fp32 probabilities ``(N, K)`` on labelled cases: the report for
    ``export.json`` and the reason to refuse the int8 model (``None`` when it may be kept).

    Decisions are taken as predict takes them: at ``threshold`` on the positive class for a
    binary model, else the most probable class. A flip's margin is how far fp32 was from the
    boundary: ``|p - threshold|`` (binary) or top-1 minus the class int8 chose.
    """
    import numpy as np

    from medsight.metrics.classification import auc_score

    if threshold is not None:
        d32, d8 = p32[:, 1] >= threshold, p8[:, 1] >= threshold
        margin = np.abs(p32[:, 1] - threshold)
    else:
        d32, d8 = p32.argmax(1), p8.argmax(1)
        margin = p32.max(1) - p32[np.arange(len(p32)), d8]
    flipped = d32 != d8
    report = {"val_images": int(len(y)), "auc_fp32": auc_score(y, p32), "auc_int8": auc_score(y, p8),
              "max_probability_change": float(np.abs(p32 - p8).max()),
              "decisions_flipped": float(flipped.mean()),
              "largest_flipped_margin": float(margin[flipped].max()) if flipped.any() else 0.0}
    auc_change = abs(report["auc_int8"] - report["auc_fp32"])
    problem = None
    if auc_change > INT8_MAX_AUC_CHANGE:
        problem = f"AUC {report['auc_fp32']:.3f} -> {report['auc_int8']:.3f}"
    elif report["largest_flipped_margin"] > INT8_BORDERLINE:
        problem = (f"a decision fp32 made with a margin of {report['largest_flipped_margin']:.2f} flipped "
                   f"(only borderline flips, margin <= {INT8_BORDERLINE:g}, are tolerated)")
    elif report["decisions_flipped"] > INT8_MAX_FLIPS:
        problem = f"{report['decisions_flipped']:.1%} decisions flipped (at most {INT8_MAX_FLIPS:.0%})"
    return report, problem


@torch.no_grad()
def max_difference(model: torch.nn.Module, engine: OnnxEngine, shape: list[int]) -> float:
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(1))
    return float((engine(x) - model(x).float()).abs().max())
