"""Calibration, TTA and uncertainty on a trained run: what training leaves, what predict uses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medsight.data.synthetic import synthetic_sample
from medsight.evaluation.calibrate import calibrate_run
from medsight.inference.calibration import CALIBRATION_FILE, calibrated_softmax
from medsight.inference.load import load_run
from medsight.inference.predict import diagnose, model_input

N_IMAGES = 24


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _images(run) -> torch.Tensor:
    return torch.stack([model_input(run, synthetic_sample(0, "test", i)["image"]) for i in range(N_IMAGES)])


def test_training_leaves_a_calibration_fitted_on_val(trained_run):
    c = json.loads((trained_run / CALIBRATION_FILE).read_text())
    assert c["split"] == "val" and c["n"] == 100
    assert c["temperature"] > 0
    assert c["nll_after"] <= c["nll_before"] + 1e-9  # T = 1 is in the search range
    assert 0.0 <= c["ece_after"] <= 1.0 and 0.0 <= c["ece_before"] <= 1.0
    assert c["review_fraction"] == 0.1
    assert c["flagged_on_val"] == pytest.approx(0.1, abs=0.02)
    assert c["tta"]["views"] == ["identity", "flip1", "rotate+10", "rotate-10"]  # trained with flip: [1]
    assert c["tta"]["nll_after"] <= c["tta"]["nll_before"] + 1e-9
    assert len(c["checkpoint_sha256"]) == 64


def test_calibration_changes_no_decision(run_copy):
    calibrated = load_run(run_copy, prefer_onnx=False)
    assert calibrated.temperature() == pytest.approx(json.loads((run_copy / CALIBRATION_FILE).read_text())["temperature"])
    (run_copy / CALIBRATION_FILE).unlink()
    plain = load_run(run_copy, prefer_onnx=False)
    assert plain.calibration is None and plain.temperature() == 1.0
    x = _images(plain)
    a, b = diagnose(calibrated, x), diagnose(plain, x)
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert all(r["needs_review"] is None for r in b)  # no calibration, no review threshold
    assert all(isinstance(r["needs_review"], bool) for r in a)


def test_forced_temperature_softens_probabilities_and_keeps_saved_thresholds(run_copy):
    (run_copy / CALIBRATION_FILE).write_text(json.dumps({"temperature": 3.0, "review_threshold": 0.5}))
    (run_copy / "decision.json").write_text(json.dumps({"threshold": 0.3}))  # chosen before calibration
    hot = load_run(run_copy, prefer_onnx=False)
    x = _images(hot)
    logits = hot.view_logits(x)[0]
    assert torch.allclose(hot.probabilities(x)[0], calibrated_softmax(logits, 3.0), atol=1e-6)
    for record, raw in zip(diagnose(hot, x), torch.softmax(logits, 1)):
        assert (record["label_index"] == 1) == bool(raw[1] >= 0.3)  # the decisions made at T = 1
        assert record["threshold"] != pytest.approx(0.3)
        assert record["review_threshold"] == 0.5
        assert record["needs_review"] == (record["uncertainty"] > 0.5)


def test_config_review_threshold_wins(run_copy):
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["evaluation"]["review_threshold"] = 0.05
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = load_run(run_copy, prefer_onnx=False)
    assert run.review_threshold() == run.review_threshold(tta=True) == 0.05


def test_tta_predictions_are_averaged_views(trained_run):
    run = load_run(trained_run, prefer_onnx=False)
    x = _images(run)
    views = run.probabilities(x, tta=True)
    assert views.shape == (4, N_IMAGES, 2)
    records = diagnose(run, x, tta=True)
    mean = views.mean(0).numpy()
    for record, p in zip(records, mean):
        assert list(record["probabilities"].values()) == pytest.approx(p.tolist(), abs=1e-5)
        assert record["tta"] is True and 0.0 <= record["uncertainty"] <= 1.0
        assert record["mutual_information"] is not None and record["variance"] >= 0.0
    # the model is good: TTA changes few decisions
    plain = diagnose(run, x)
    agree = np.mean([a["label"] == b["label"] for a, b in zip(records, plain)])
    assert agree >= 0.8


def test_calibrate_again_and_the_onnx_engine_uses_it(run_copy):
    from medsight.inference.export import export_run

    result = calibrate_run(run_copy, review_fraction=0.2, tta=False)
    assert "tta" not in result and result["review_fraction"] == 0.2
    assert result["flagged_on_val"] == pytest.approx(0.2, abs=0.03)
    export_run(run_copy, "onnx", None)
    onnx = load_run(run_copy)
    torch_run = load_run(run_copy, prefer_onnx=False)
    assert onnx.engine.name == json.loads((run_copy / "engine.json").read_text())["engine"]  # checked on val
    x = _images(torch_run)
    p_onnx, p_torch = onnx.probabilities(x, tta=True), torch_run.probabilities(x, tta=True)
    assert onnx.temperature() == result["temperature"] != 1.0
    # the chosen engine on one side, PyTorch at the run's precision on the other: close, not equal
    assert (p_onnx - p_torch).abs().max() < 0.05
