"""ONNX export: written atomically, equal to PyTorch within 1e-4, used by predict while current."""

import json
import shutil

import pytest
import torch

from medsight.errors import ConfigError
from medsight.inference.batch import predict_paths
from medsight.inference.engine import EXPORT_FILE, ONNX_FILE, OnnxEngine
from medsight.inference.export import export_run
from medsight.inference.load import load_run
from medsight.runtime import PRECISION_ENV, Runtime
from medsight.runtime.engine import TorchEngine, run_batches


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def test_onnx_equals_pytorch_within_1e4(run_copy):
    path = export_run(run_copy)
    assert path == run_copy / ONNX_FILE and path.stat().st_size > 10_000
    meta = json.loads((run_copy / EXPORT_FILE).read_text())
    assert meta["max_abs_difference"] <= 1e-4
    run = load_run(run_copy, prefer_onnx=False)
    fp32 = TorchEngine(run.model.float(), Runtime.create("fp32", threads=1))
    x = torch.rand(7, *[int(run.plan["in_channels"])] + run.plan["input_shape"],
                   generator=torch.Generator().manual_seed(3))
    onnx = OnnxEngine(path, threads=1)
    assert torch.allclose(run_batches(onnx, x, batch_size=3), run_batches(fp32, x), atol=1e-4)


def test_predict_uses_the_export_and_gives_the_same_answers(run_copy, tmp_path, monkeypatch):
    from tests.inference.files import write_slice_files

    monkeypatch.setenv(PRECISION_ENV, "fp32")  # compare like with like on a bf16 CPU too
    files = list(write_slice_files(tmp_path / "in").values())[:3]
    torch_results = predict_paths(run_copy, files, tmp_path / "torch", heatmaps=False).results
    tolerance = 1e-4
    export_run(run_copy)
    assert load_run(run_copy).engine.name == "onnxruntime"
    onnx_results = predict_paths(run_copy, files, tmp_path / "onnx", heatmaps=True).results
    for a, b in zip(torch_results, onnx_results):
        assert a["label"] == b["label"]
        for name, p in a["probabilities"].items():
            assert b["probabilities"][name] == pytest.approx(p, abs=tolerance)
    assert all(r["heatmap"] for r in onnx_results)  # Grad-CAM still from the PyTorch model


def test_a_stale_export_is_not_used(run_copy):
    export_run(run_copy)
    (run_copy / "checkpoints" / "best.pt").write_bytes((run_copy / "checkpoints" / "last.pt").read_bytes())
    assert load_run(run_copy).engine.name.startswith("pytorch")


def test_unknown_format_is_a_config_error(run_copy):
    with pytest.raises(ConfigError, match="onnx"):
        export_run(run_copy, "tflite")


def test_int8_export_is_validated_and_recorded(run_copy):
    export_run(run_copy, quantize="int8")
    meta = json.loads((run_copy / EXPORT_FILE).read_text())
    assert meta["precision"] == "int8"
    check = meta["int8_validation"]
    assert check["val_images"] == 100
    assert abs(check["auc_int8"] - check["auc_fp32"]) <= 0.01 and check["decisions_flipped"] <= 0.02
    assert load_run(run_copy).engine.name == "onnxruntime"
    assert not list(run_copy.glob("*.pre.onnx")) and not list(run_copy.glob("*.int8.onnx"))
