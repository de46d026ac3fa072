"""The default engine: the fastest on this CPU kind whose validation decisions all equal fp32
PyTorch's, recorded in engine.json and followed only where it was checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from medsight.evaluation.calibrate import val_split
from medsight.inference import engine_choice
from medsight.inference.engine_choice import REFERENCE, candidates, choose_engine, recorded_engine
from medsight.inference.export import export_run
from medsight.inference.load import load_run
from medsight.runtime import PRECISION_ENV, Runtime, cpu_kind
from medsight.runtime.run_folder import RunFolder
from medsight.utils.extras import available


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _record(run: Path) -> dict:
    return json.loads(RunFolder(run).engine.read_text())


def _fastest_unchanged(record: dict) -> str:
    kept = {n: c for n, c in record["candidates"].items() if c["flips"] == 0}
    return max(kept, key=lambda n: kept[n]["images_per_second"])


def test_training_chooses_among_the_pytorch_engines_on_val(trained_run):
    record = _record(trained_run)
    assert record["cpu_kind"] == cpu_kind() and record["validation_cases"] == 100
    names = set(record["candidates"])
    assert REFERENCE in names and ("pytorch-bf16" in names) == Runtime.create("auto").bf16
    assert record["candidates"][REFERENCE]["flips"] == 0  # the reference against itself
    assert record["engine"] == _fastest_unchanged(record)
    assert load_run(trained_run).engine.name == record["engine"]


def test_export_adds_its_engines_and_predict_follows_the_choice(run_copy):
    export_run(run_copy)
    record = _record(run_copy)
    assert "onnxruntime" in record["candidates"]
    assert any(n.startswith("openvino") for n in record["candidates"]) == available("openvino")
    assert record["engine"] == _fastest_unchanged(record)
    assert load_run(run_copy).engine.name == record["engine"]


class _Wrong:
    """An engine faster than any other that swaps the two classes' scores."""

    name = "fast-but-wrong"

    def __init__(self, run):
        self.inner = candidates(run)[REFERENCE]()

    def __call__(self, images):
        return self.inner(images).flip(1)


def test_an_engine_that_changes_a_decision_is_never_chosen(run_copy, monkeypatch):
    run = load_run(run_copy, prefer_onnx=False)
    real = engine_choice.candidates
    monkeypatch.setattr(engine_choice, "candidates", lambda r: {**real(r), "fast-but-wrong": lambda: _Wrong(r)})
    record = choose_engine(run, val_split(run).images[:40])
    assert record["candidates"]["fast-but-wrong"]["flips"] > 0
    assert record["engine"] != "fast-but-wrong" and record["candidates"][record["engine"]]["flips"] == 0


def test_a_choice_is_followed_only_on_its_cpu_kind_and_checkpoint(run_copy):
    path = RunFolder(run_copy).engine
    record = _record(run_copy)
    run = load_run(run_copy, prefer_onnx=False)
    assert recorded_engine(run).name == record["engine"]
    path.write_text(json.dumps({**record, "cpu_kind": "another-kind"}))
    assert recorded_engine(run) is None
    path.write_text(json.dumps({**record, "checkpoint_sha256": "0" * 64}))
    assert recorded_engine(run) is None
    path.write_text("{not json")
    assert recorded_engine(run) is None
    assert load_run(run_copy).engine.name.startswith("pytorch")  # the fallback still predicts


def test_forced_fp32_rules_out_the_bf16_engines(run_copy, monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    run = load_run(run_copy, prefer_onnx=False)
    assert not any("bf16" in n for n in candidates(run))
    record = {**_record(run_copy), "engine": "pytorch-bf16"}
    RunFolder(run_copy).engine.write_text(json.dumps(record))
    assert recorded_engine(run) is None
    assert load_run(run_copy).engine.name == "pytorch-fp32"


def test_the_reference_engine_runs_in_fp32_on_any_cpu(run_copy):
    run = load_run(run_copy, prefer_onnx=False)
    ref = candidates(run)[REFERENCE]()
    x = val_split(run).images[:4]
    with torch.inference_mode():
        expected = run.model.float()(x)
    assert torch.allclose(ref(x), expected, atol=1e-5)


def test_the_command_line_says_which_engine_runs(run_copy, tmp_path):
    from tests.cli.helpers import invoke
    from tests.inference.files import write_slice_files

    exported = invoke("export", run_copy, "--format", "onnx")
    assert exported.exit_code == 0, exported.stderr
    chosen = _record(run_copy)["engine"]
    assert f"predict's engine on this CPU: {chosen} " in exported.stdout
    image = write_slice_files(tmp_path / "in")["png"]
    predicted = invoke("predict", run_copy, image, "--out", tmp_path / "out", "--no-heatmap")
    assert predicted.exit_code == 0 and f"on {chosen}" in predicted.stdout.splitlines()[-1]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["engine"] == chosen
