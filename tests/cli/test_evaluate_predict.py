"""The ``medsight`` command as users run it: evaluate and predict.

User errors end with exit status 2 and ONE line on stderr naming the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.helpers import assert_user_error, check_metrics, invoke


def test_evaluate_writes_metrics_with_cis_into_the_run(run_copy):
    result = invoke("evaluate", run_copy)
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((run_copy / "metrics.json").read_text())
    check_metrics(metrics)
    assert metrics["n"] == 16 and metrics["split"] == "test"
    assert metrics["threshold"] == 0.5
    assert "auc" in result.stdout and "[" in result.stdout  # summary with CIs
    assert (run_copy / "report.html").is_file()
    assert not (run_copy / "decision.json").exists()


def test_evaluate_out_folder_leaves_the_run_alone(cli_run, tmp_path):
    before = sorted(p.name for p in cli_run.iterdir())
    result = invoke("evaluate", cli_run, "--split", "val", "--out", tmp_path / "eval")
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    check_metrics(metrics)
    assert metrics["split"] == "val" and metrics["n"] == 16
    assert sorted(p.name for p in cli_run.iterdir()) == before


def test_target_sensitivity_sets_the_threshold_predict_uses(run_copy, slice_files, tmp_path):
    result = invoke("evaluate", run_copy, "--target-sensitivity", "0.9")
    assert result.exit_code == 0, (result.output, result.exception)
    decision = json.loads((run_copy / "decision.json").read_text())
    assert decision["target_sensitivity"] == 0.9
    threshold = decision["threshold"]
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["threshold"] == pytest.approx(threshold)
    assert "val" in metrics["threshold_source"]

    out = tmp_path / "preds"
    result = invoke("predict", run_copy, slice_files["dicom"], slice_files["nifti"], "--out", out, "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    for record in json.loads((out / "predictions.json").read_text()):
        assert record["threshold"] == pytest.approx(threshold)
        assert (record["label"] == "nodule") == (record["probabilities"]["nodule"] >= threshold)


@pytest.mark.parametrize("threshold, label", [(0.001, "nodule"), (0.999, "no nodule")])
def test_saved_decision_threshold_drives_the_label(run_copy, slice_files, tmp_path, threshold, label):
    # a threshold chosen on the run's current calibration (evaluate records its temperature)
    temperature = json.loads((run_copy / "calibration.json").read_text())["temperature"]
    (run_copy / "decision.json").write_text(json.dumps({"threshold": threshold, "temperature": temperature}))
    result = invoke("predict", run_copy, slice_files["dicom"], "--out", tmp_path / "p", "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    [record] = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert record["threshold"] == pytest.approx(threshold)
    assert record["label"] == label


def test_evaluate_unknown_split_is_a_user_error(cli_run, tmp_path):
    result = invoke("evaluate", cli_run, "--split", "validation", "--out", tmp_path / "e")
    assert_user_error(result, "validation")


# --- predict -------------------------------------------------------------------------------

def test_predict_dicom_nifti_and_png(cli_run, slice_files, tmp_path):
    inputs = [slice_files["dicom"], slice_files["nifti"], slice_files["png"]]
    out = tmp_path / "preds"
    result = invoke("predict", cli_run, *inputs, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    records = json.loads((out / "predictions.json").read_text())
    assert isinstance(records, list) and len(records) == 3
    assert [r["input"] for r in records] == [str(p) for p in inputs]
    for record in records:
        assert record["label"] in ("no nodule", "nodule")
        probs = record["probabilities"]
        assert set(probs) == {"no nodule", "nodule"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        heatmap = Path(record["heatmap"])
        assert heatmap.is_file()
        with Image.open(heatmap) as image:
            assert image.format == "PNG"
        assert f"{record['input']}: {record['label']}" in result.stdout
    assert len({r["heatmap"] for r in records}) == 3


def test_predict_folder(cli_run, slice_files, tmp_path):
    out = tmp_path / "preds"
    result = invoke("predict", cli_run, slice_files["dicom"].parent, "--out", out, "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(r["input"] for r in records) == sorted(str(p) for p in slice_files.values())


