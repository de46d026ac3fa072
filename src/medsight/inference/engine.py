"""The ONNX engine: a run's exported model under ONNX Runtime (the PyTorch engine and the
batching are ``medsight.runtime.engine``; training's validation uses them too).

``medsight export RUN --format onnx`` writes ``RUN/model.onnx``; from then on predict,
evaluate and the service run the forward pass in ONNX Runtime (fused convolutions, its own
thread pool: several times the eager fp32 PyTorch rate on CPUs without native bf16; see
``bench/throughput.py``). Explanations still come from the PyTorch model, which needs
gradients.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from medsight.errors import InputFileError
from medsight.runtime.run_folder import EXPORT_FILE, ONNX_FILE
from medsight.utils.extras import available, require
from medsight.utils.hashing import file_sha256

log = logging.getLogger(__name__)
__all__ = ["EXPORT_FILE", "ONNX_FILE", "OnnxEngine", "OpenVinoEngine", "exported_model", "file_sha256"]


class OnnxEngine:
    """An exported model (fp32, or int8 after ``--quantize int8``) under ONNX Runtime's CPU provider."""

    def __init__(self, path: Path, threads: int, name: str = "onnxruntime"):
        require("onnxruntime", extra="onnx", feature="running an ONNX export")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputFileError(path, f"not a usable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name = name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


def exported_model(run_dir: Path, checkpoint_file: Path) -> Path | None:
    """``RUN/model.onnx`` if it was exported from this very checkpoint and ONNX Runtime is
    installed, else None."""
    onnx_path, meta_path = run_dir / ONNX_FILE, run_dir / EXPORT_FILE
    if not (onnx_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if meta.get("checkpoint_sha256") != file_sha256(checkpoint_file):
        log.warning("%s is stale (the checkpoint changed after export); using PyTorch. "
                    "Run `medsight export` again.", onnx_path)
        return None
    if not available("onnxruntime"):  # the export is optional: PyTorch gives the same answers
        log.warning("%s is not used: onnxruntime is not installed (pip install 'medsight[onnx]'); "
                    "using PyTorch", onnx_path)
        return None
    return onnx_path


class OpenVinoEngine:
    """An ONNX export under OpenVINO's CPU runtime: bf16 where the CPU runs it natively (its
    default there), else fp32. OpenVINO targets exactly the AVX-512/AMX CPUs hospitals buy."""

    def __init__(self, path: Path, threads: int, bf16: bool):
        require("openvino", extra="openvino", feature="the OpenVINO engine")
        import openvino as ov

        precision = "bf16" if bf16 else "f32"
        try:
            self.model = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                    "INFERENCE_PRECISION_HINT": precision})
        except Exception as exc:  # OpenVINO raises its own exception types
            raise InputFileError(path, f"not usable by OpenVINO ({str(exc).splitlines()[0][:200]})") from None
        self.name = f"openvino-{'bf16' if bf16 else 'fp32'}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().float().cpu().numpy())
        return torch.from_numpy(np.array(self.model(x)[0], dtype=np.float32, copy=True))
