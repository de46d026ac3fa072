"""Predicting on identifiable DICOM leaks no patient name or ID into logs or outputs."""

import logging

import pydicom
from pydicom.data import get_testdata_file

from medsight.inference.batch import predict_paths


def test_predict_on_identifiable_dicom_keeps_patient_data_out_of_logs_and_results(
        trained_run, tmp_path, caplog, capsys):
    files = [get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")]
    secrets = set()
    for f in files:
        ds = pydicom.dcmread(f)
        secrets |= {str(ds.PatientName), str(ds.PatientID)}
    secrets = {s for s in secrets if len(s) >= 3}
    assert secrets
    # pydicom's real head CT and MR are foreign to the synthetic-CT run: predicted anyway
    # (the override path logs too); the guard's own refusals are in test_guard.py
    with caplog.at_level(logging.DEBUG):
        results = predict_paths(trained_run, files, tmp_path / "out", allow_foreign=True).results
    assert len(results) == 2 and results[0]["modality"] == "CT"
    captured = capsys.readouterr()
    written = (tmp_path / "out" / "predictions.json").read_text()
    for text in (caplog.text, captured.out, captured.err, written):
        for secret in secrets:
            assert secret not in text
