"""``medsight export RUN --format onnx``: the best checkpoint as ``RUN/model.onnx``.

The export is checked before it is kept: ONNX Runtime's logits on a random batch must match
PyTorch's (fp32) within ``TOLERANCE``; ``RUN/export.json`` records the checkpoint's hash, so
a model retrained later never silently runs with a stale export.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from pathlib import Path

import torch

from medsight.errors import ConfigError, MedsightError
from medsight.inference.engine import EXPORT_FILE, ONNX_FILE, OnnxEngine, file_sha256
from medsight.inference.load import load_run
from medsight.runtime.checkpoint import BEST
from medsight.utils.atomic import atomic_path, write_json

log = logging.getLogger(__name__)
FORMATS = ("onnx",)
TOLERANCE = 1e-4
OPSET = 17


def export_run(run_dir: str | Path, fmt: str = "onnx") -> Path:
    """Export the run's best model; return the written file."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    run = load_run(run_dir, prefer_onnx=False)
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
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
        diff = _max_difference(model, OnnxEngine(tmp, run.runtime.threads), shape)
        if diff > TOLERANCE:
            raise MedsightError(f"{run_dir}: the ONNX export differs from PyTorch by {diff:.2e} "
                                f"(more than {TOLERANCE:g}); not written")
    write_json(run_dir / EXPORT_FILE, {"format": fmt, "file": ONNX_FILE, "opset": OPSET,
                                       "checkpoint": BEST,
                                       "checkpoint_sha256": file_sha256(run_dir / "checkpoints" / BEST),
                                       "max_abs_difference": diff, "input_shape": ["batch", *shape]})
    log.info("exported %s (max |ONNX - PyTorch| = %.1e)", out, diff)
    return out


@torch.no_grad()
def _max_difference(model: torch.nn.Module, engine: OnnxEngine, shape: list[int]) -> float:
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(1))
    return float((engine(x) - model(x).float()).abs().max())
