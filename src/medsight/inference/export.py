"""``medsight export RUN --format onnx``: the best checkpoint as ``RUN/model.onnx``.

The export is checked before it is kept: ONNX Runtime's logits on a random batch must match
PyTorch's (fp32) within ``TOLERANCE``; ``RUN/export.json`` records the checkpoint's hash, so
a model retrained later never silently runs with a stale export.

``--quantize int8`` adds ONNX Runtime's static int8 quantisation (per-channel weights,
activations calibrated on training images): several times faster again on CPUs with int8
dot-product instructions. It is validated on the run's validation split and refused when
it moves the AUC by more than ``INT8_MAX_AUC_CHANGE`` or flips more than
``INT8_MAX_FLIPS`` of the decisions; the figures go into ``export.json``.
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
from medsight.inference.load import load_run
from medsight.runtime.checkpoint import BEST
from medsight.runtime.engine import run_batches
from medsight.utils.atomic import atomic_path, write_json

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
FORMATS = ("onnx",)
QUANTIZE = (None, "int8")
TOLERANCE = 1e-4
OPSET = 17
INT8_MAX_AUC_CHANGE, INT8_MAX_FLIPS = 0.01, 0.02
CALIBRATION_IMAGES = 256


def export_run(run_dir: str | Path, fmt: str = "onnx", quantize: str | None = None) -> Path:
    """Export the run's best model; return the written file."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantisation {quantize!r}; choose int8 (or none)")
    run_dir = Path(run_dir)
    run = load_run(run_dir, prefer_onnx=False)
    if run.clinical is not None:  # two inputs (images + table): not wired through export and engines yet
        raise ConfigError(f"{run_dir}: export of runs fused with clinical columns is not supported yet; "
                          "predict, evaluate and serve run them in PyTorch")
    model = copy.deepcopy(run.model).float().to(memory_format=torch.contiguous_format).eval()
    shape = [int(run.plan["in_channels"]), *map(int, run.plan["input_shape"])]
    example = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python control flow in MONAI nets
        torch.onnx.export(model, (example,), buf, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    out = run_dir / ONNX_FILE
    meta = {"format": fmt, "file": ONNX_FILE, "opset": OPSET, "precision": quantize or "fp32",
            "checkpoint": BEST, "checkpoint_sha256": file_sha256(run_dir / "checkpoints" / BEST),
            "input_shape": ["batch", *shape]}
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
        diff = _max_difference(model, OnnxEngine(tmp, run.runtime.threads), shape)
        if diff > TOLERANCE:
            raise MedsightError(f"{run_dir}: the ONNX export differs from PyTorch by {diff:.2e} "
                                f"(more than {TOLERANCE:g}); not written")
        meta["max_abs_difference"] = diff
        if quantize == "int8":
            meta["int8_validation"] = _quantize_int8(run, tmp)
    write_json(run_dir / EXPORT_FILE, meta)
    log.info("exported %s (%s; max |ONNX - PyTorch| = %.1e)", out, meta["precision"], diff)
    return out


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


def _quantize_int8(run, onnx_path: Path) -> dict:
    """Quantise ``onnx_path`` in place, calibrated on training images and checked on val."""
    from medsight.data.prepared import prepare_data
    from medsight.data.registry import build_dataset
    from medsight.metrics.classification import auc_score

    cfg = run.inference_config()
    data = build_dataset(cfg.data, cfg.train.seed)
    prepared, _ = prepare_data(data, cfg, ("train", "val"), channels=int(run.plan["in_channels"]))
    q = onnx_path.with_suffix(".int8.onnx")
    try:
        quantize_onnx_int8(onnx_path, q, prepared["train"].images[:CALIBRATION_IMAGES].numpy())
        val = prepared["val"]
        p32 = torch.softmax(run_batches(OnnxEngine(onnx_path, run.runtime.threads), val.images), 1).numpy()
        p8 = torch.softmax(run_batches(OnnxEngine(q, run.runtime.threads), val.images), 1).numpy()
        y = val.labels.numpy()
        report = {"val_images": len(y), "auc_fp32": auc_score(y, p32), "auc_int8": auc_score(y, p8),
                  "max_probability_change": float(abs(p32 - p8).max()),
                  "decisions_flipped": float((p32.argmax(1) != p8.argmax(1)).mean())}
        if (abs(report["auc_int8"] - report["auc_fp32"]) > INT8_MAX_AUC_CHANGE
                or report["decisions_flipped"] > INT8_MAX_FLIPS):
            raise MedsightError(f"{run.run_dir}: int8 quantisation changes the model too much on the "
                                f"validation split (AUC {report['auc_fp32']:.3f} -> {report['auc_int8']:.3f}, "
                                f"{report['decisions_flipped']:.1%} decisions flipped); not written")
        os.replace(q, onnx_path)
        return report
    finally:
        q.unlink(missing_ok=True)


@torch.no_grad()
def _max_difference(model: torch.nn.Module, engine: OnnxEngine, shape: list[int]) -> float:
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(1))
    return float((engine(x) - model(x).float()).abs().max())
