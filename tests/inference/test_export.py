"""ONNX export: written atomically, equal to PyTorch within 1e-4, used by predict while current."""

import json
import shutil

import numpy as np
import pytest
import torch

from medsight.errors import ConfigError, MedsightError
from medsight.inference import export
from medsight.inference.batch import predict_paths
from medsight.inference.engine import EXPORT_FILE, ONNX_FILE, OnnxEngine
from medsight.inference.export import export_run, int8_check
from medsight.inference.load import load_run
from medsight.runtime import PRECISION_ENV, Runtime
from medsight.runtime.engine import TorchEngine, run_batches
from medsight.runtime.run_folder import ENGINE_FILE


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
    record = json.loads((run_copy / ENGINE_FILE).read_text())
    assert "onnxruntime" in record["candidates"] and load_run(run_copy).engine.name == record["engine"]
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


def test_int8_export_is_validated_and_recorded(run_copy, monkeypatch):
    # int8 kernels round differently per ISA (AVX2, VNNI, AMX): which borderline validation
    # cases flip is the CPU's business, so the limits are opened here and the rule itself is
    # tested on fixed probabilities below.
    monkeypatch.setattr(export, "INT8_MAX_FLIPS", 1.0)
    monkeypatch.setattr(export, "INT8_BORDERLINE", 1.0)
    monkeypatch.setattr(export, "INT8_MAX_AUC_CHANGE", 1.0)
    export_run(run_copy, quantize="int8")
    meta = json.loads((run_copy / EXPORT_FILE).read_text())
    assert meta["precision"] == "int8"
    check = meta["int8_validation"]
    assert check["val_images"] == 100
    assert 0.5 < check["auc_int8"] <= 1 and 0 <= check["decisions_flipped"] <= 1
    assert check["max_probability_change"] < 0.5  # the quantised model is the same model, roughly
    # int8 is a candidate for the default engine, chosen only if it changes no decision on this CPU
    record = json.loads((run_copy / ENGINE_FILE).read_text())
    assert "onnxruntime-int8" in record["candidates"] and "onnxruntime" not in record["candidates"]
    assert record["candidates"][record["engine"]]["flips"] == 0
    assert load_run(run_copy).engine.name == record["engine"]
    assert not list(run_copy.glob("*.pre.onnx")) and not list(run_copy.glob("*.int8.onnx"))


def test_int8_export_refused_by_its_check_leaves_nothing(run_copy, monkeypatch):
    monkeypatch.setattr(export, "INT8_MAX_AUC_CHANGE", -1.0)  # any int8 model now fails
    with pytest.raises(MedsightError, match=r"int8 quantisation changes the model.*AUC"):
        export_run(run_copy, quantize="int8")
    assert not (run_copy / EXPORT_FILE).exists() and not list(run_copy.glob("*.onnx"))
    assert load_run(run_copy).engine.name.startswith("pytorch")


def _binary(p):
    p = np.asarray(p, dtype=float)
    return np.stack([1 - p, p], 1)


def test_int8_check_tolerates_borderline_flips_only():
    y = np.array([0, 1] * 50)
    p32 = np.where(y == 1, 0.9, 0.1)
    p32[:2] = [0.48, 0.52]
    p8 = p32.copy()
    p8[:2] = [0.52, 0.47]  # two borderline cases cross 0.5: 2% flipped, margins 0.02
    report, problem = int8_check(y, _binary(p32), _binary(p8), threshold=0.5)
    assert problem is None and report["decisions_flipped"] == 0.02
    assert report["largest_flipped_margin"] == pytest.approx(0.02)

    p8[2] = 0.55  # a case fp32 called negative at 0.9 margin... well, 0.1 -> 0.55: confident flip
    report, problem = int8_check(y, _binary(p32), _binary(p8), threshold=0.5)
    assert problem and "margin of 0.40" in problem


def test_int8_check_limits_the_share_of_flips_and_the_auc():
    y = np.array([0, 1] * 50)
    p32 = np.where(y == 1, 0.55, 0.40)
    p8 = p32.copy()
    p8[[1, 3, 5]] = 0.48  # three positives cross 0.5 (margins 0.05), the ranking stays: 3% > 2%
    report, problem = int8_check(y, _binary(p32), _binary(p8), threshold=0.5)
    assert problem and "3.0% decisions flipped" in problem
    _, problem = int8_check(y, _binary(p32), _binary(1 - p32), threshold=0.5)
    assert problem and problem.startswith("AUC 1.000 -> 0.000")


def test_int8_check_multiclass_uses_the_top_class():
    y = np.array([0, 1, 2])
    p32 = np.array([[0.8, 0.1, 0.1], [0.1, 0.45, 0.45], [0.1, 0.1, 0.8]])
    p8 = np.array([[0.8, 0.1, 0.1], [0.1, 0.44, 0.46], [0.1, 0.1, 0.8]])
    report, _ = int8_check(y, p32, p8)
    assert report["decisions_flipped"] == pytest.approx(1 / 3) and report["largest_flipped_margin"] == 0.0


