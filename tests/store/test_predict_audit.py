"""``medsight predict --db``: a row per prediction (and per refused file) with the input's sha256,
the run and its checkpoint's sha256, and nothing that names the patient."""

from __future__ import annotations

import hashlib
import json

import pydicom
from pydicom.data import get_testdata_file

from medsight.store import open_database
from medsight.store.audit import export_rows, verify
from tests.cli.helpers import assert_user_error, invoke
from tests.inference.files import write_slice_files

NAME, PATIENT_ID = "Doe^Jane", "PID-0042-X"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_predict_with_db_writes_one_row_per_input_and_no_patient_data(trained_run, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = NAME, PATIENT_ID
    dicom = tmp_path / "in" / "Jane_Doe_PID-0042-X.dcm"  # a file name a hospital export might give
    dicom.parent.mkdir()
    ds.save_as(dicom)
    png = write_slice_files(tmp_path / "in")["png"]
    bad = tmp_path / "in" / "Doe_Jane_scan.dcm"
    bad.write_bytes(b"DICM" + b"\0" * 50)
    url = f"sqlite:///{tmp_path / 'audit.db'}"

    # pydicom's real head CT is far from the synthetic lung slices the run knows: the input guard
    # refuses it by its OOD score, so it is allowed here (this test is about the audit rows)
    result = invoke("predict", trained_run, dicom, png, bad, "--out", tmp_path / "out", "--no-heatmap", "--db", url,
                    "--allow-foreign")
    assert result.exit_code == 2, (result.output, result.exception)  # the bad file is listed, the rest done
    predictions = {p["input"]: p for p in json.loads((tmp_path / "out" / "predictions.json").read_text())}

    db = open_database(url)
    rows = list(export_rows(db))
    assert len(rows) == 3 and verify(db).intact
    by_sha = {r["input_sha256"]: r for r in rows}
    assert set(by_sha) == {sha(dicom), sha(png), sha(bad)}
    best = trained_run / "checkpoints" / "best.pt"
    for path in (dicom, png):
        row = by_sha[sha(path)]
        assert row["label"] == predictions[str(path)]["label"] and not row["refused"]
        assert row["threshold"] == predictions[str(path)]["threshold"]
        assert row["output"]["probabilities"] == predictions[str(path)]["probabilities"]
        assert row["checkpoint_sha256"] == sha(best) and row["run"] == str(trained_run.resolve())
        assert row["caller"].startswith("cli") and row["duration_ms"] > 0
        assert row["calibration"]["temperature"] > 0
    refused = by_sha[sha(bad)]
    assert refused["refused"] and refused["reason"] and refused["label"] is None

    stored = "\n".join(json.dumps(r) for r in rows)
    stored += "".join(f.read_bytes().decode("latin-1") for f in tmp_path.glob("audit.db*"))
    for secret in ("Doe", "Jane", "PID-0042", "Jane_Doe"):
        assert secret not in stored, secret


def test_predict_without_db_writes_no_database(trained_run, tmp_path):
    png = write_slice_files(tmp_path / "in")["png"]
    result = invoke("predict", trained_run, png, "--out", tmp_path / "out", "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    assert not list(tmp_path.rglob("*.db"))


def test_predict_with_a_bad_db_url_is_one_line_before_any_work(trained_run, tmp_path):
    png = write_slice_files(tmp_path / "in")["png"]
    result = invoke("predict", trained_run, png, "--out", tmp_path / "out", "--db", "postgres:/nohost")
    assert_user_error(result, "--db")
    assert not (tmp_path / "out").exists()
