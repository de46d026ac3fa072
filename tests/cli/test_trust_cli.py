"""``medsight calibrate``, ``--tta`` and ``--explain occlusion`` end to end on the trained run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import assert_user_error, invoke


@pytest.fixture
def trained_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_calibrate_writes_calibration_json(trained_copy):
    (trained_copy / "calibration.json").unlink()
    result = invoke("calibrate", trained_copy, "--review-fraction", "0.2")
    assert result.exit_code == 0, (result.output, result.exception)
    c = json.loads((trained_copy / "calibration.json").read_text())
    assert {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n"} <= set(c)
    assert c["review_fraction"] == 0.2 and c["flagged_on_val"] == pytest.approx(0.2, abs=0.03)
    assert f"temperature {c['temperature']:.3f}" in result.stdout
    assert "calibration.json" in result.stdout


def test_calibrate_a_folder_that_is_no_run_is_one_line(tmp_path):
    assert_user_error(invoke("calibrate", tmp_path), str(tmp_path), "not a medsight run folder")


def test_evaluate_tta_reports_calibration_uncertainty_and_referral(trained_copy):
    result = invoke("evaluate", trained_copy, "--tta")
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((trained_copy / "metrics.json").read_text())
    assert metrics["tta"]["views"] == ["identity", "flip1", "rotate+10", "rotate-10"]
    cal = json.loads((trained_copy / "calibration.json").read_text())
    assert metrics["calibration"]["temperature"] == pytest.approx(cal["tta"]["temperature"])
    assert metrics["ece"] == pytest.approx(metrics["calibration"]["ece"])
    referral = metrics["referral"]
    assert referral["fraction_referred"][0] == 0.0 and len(referral["accuracy"]) == 11
    assert referral["accuracy"][0] == pytest.approx(metrics["accuracy"])
    assert referral["n_retained"][0] == metrics["n"] == 100
    assert 0.0 <= metrics["uncertainty"]["fraction_flagged"] <= 0.5
    with open(trained_copy / "cases_test.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"uncertainty", "needs_review", "uncalibrated p[nodule]", "p[nodule]"} <= set(rows[0])
    report = (trained_copy / "report.html").read_text()
    assert "Referral curve" in report and "Before calibration" in report and "After temperature scaling" in report


def test_predict_tta_occlusion_records_uncertainty(trained_copy, slice_files, tmp_path):
    out = tmp_path / "preds"
    result = invoke("predict", trained_copy, slice_files["dicom"], slice_files["png"], "--out", out,
                    "--tta", "--explain", "occlusion")
    assert result.exit_code == 0, (result.output, result.exception)
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 2
    for r in records:
        assert 0.0 <= r["uncertainty"] <= 1.0 and isinstance(r["needs_review"], bool)
        assert r["tta"] is True and r["mutual_information"] is not None
        assert r["heatmap_method"] == "occlusion" and Path(r["heatmap"]).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tta_views"] == ["identity", "flip1", "rotate+10", "rotate-10"]
    assert summary["needs_review"] == sum(r["needs_review"] for r in records)

    # the same folder without --tta: predicted again, not resumed from the TTA records
    result = invoke("predict", trained_copy, slice_files["dicom"], "--out", out, "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "resumed" not in result.stdout
    (record,) = json.loads((out / "predictions.json").read_text())
    assert record["tta"] is False and record["mutual_information"] is None


def test_unknown_explanation_method_is_one_line(trained_copy, slice_files, tmp_path):
    result = invoke("predict", trained_copy, slice_files["dicom"], "--out", tmp_path / "p", "--explain", "lime")
    assert_user_error(result, "lime", "occlusion")
