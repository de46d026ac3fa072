"""``medsight deid`` end to end: exit codes, corrupt input, the report, the map and the logs."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from medsight.cli import app

from .conftest import TRUNCATED, copy_tree, read

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CLEAN = ("CT_small.dcm", "MR_small.dcm", "examples_ybr_color.dcm")


def small_tree(root: Path) -> Path:
    """A few identifiable files in two subfolders."""
    for i, name in enumerate(CLEAN):
        target = root / f"site{i % 2}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), target)
    return root


def add_corrupt(root: Path) -> tuple[Path, Path]:
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    truncated, text = root / "site0" / "truncated.dcm", root / "site1" / "notes.dcm"
    truncated.parent.mkdir(parents=True, exist_ok=True)
    text.parent.mkdir(parents=True, exist_ok=True)
    truncated.write_bytes(ct[: len(ct) // 2])  # cut inside the pixel data
    text.write_text("this is not a DICOM file\n")
    return truncated, text


def invoke(*args: str):
    return CliRunner().invoke(app, ["deid", *map(str, args)])


def test_clean_folder_exits_0_and_mirrors_the_tree(tmp_path, key_file):
    src = small_tree(tmp_path / "in")
    result = invoke(src, tmp_path / "out", "--key-file", key_file)
    assert result.exit_code == 0, result.output
    for i, name in enumerate(CLEAN):
        assert (tmp_path / "out" / f"site{i % 2}" / name).is_file()
    report = json.loads((tmp_path / "out" / "deid_report.json").read_text())
    assert (report["n_files"], report["n_ok"], report["n_failed"]) == (3, 3, 0)
    assert report["failures"] == []
    assert "de-identified 3 file(s), 0 failed" in result.stdout


def test_corrupt_files_are_reported_and_the_rest_processed(tmp_path, key_file):
    src = small_tree(tmp_path / "in")
    truncated, text = add_corrupt(src)
    result = invoke(src, tmp_path / "out", "--key-file", key_file)
    assert result.exit_code == 2
    assert f"{truncated}: truncated DICOM" in result.stderr
    assert f"{text}: not a DICOM file" in result.stderr
    for i, name in enumerate(CLEAN):
        assert read(tmp_path / "out" / f"site{i % 2}" / name).PatientIdentityRemoved == "YES"
    assert not (tmp_path / "out" / "site0" / "truncated.dcm").exists()
    report = json.loads((tmp_path / "out" / "deid_report.json").read_text())
    assert (report["n_files"], report["n_ok"], report["n_failed"]) == (5, 3, 2)
    assert {f["file"] for f in report["failures"]} == {"site0/truncated.dcm", "site1/notes.dcm"}


def test_single_file_in_and_out(tmp_path, key_file):
    source = Path(get_testdata_file("CT_small.dcm"))
    result = invoke(source, tmp_path / "clean" / "ct.dcm", "--key-file", key_file)
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "clean" / "ct.dcm").PatientIdentityRemoved == "YES"
    report = json.loads((tmp_path / "clean" / "deid_report.json").read_text())
    assert report["n_ok"] == 1


def test_user_errors_are_one_line(tmp_path, key_file):
    src = small_tree(tmp_path / "in")
    missing = invoke(src, tmp_path / "out", "--key-file", tmp_path / "nope.key")
    assert missing.exit_code == 2 and "nope.key" in missing.stderr
    assert "Traceback" not in missing.output
    (tmp_path / "empty.key").write_bytes(b"\n")
    empty = invoke(src, tmp_path / "out", "--key-file", tmp_path / "empty.key")
    assert empty.exit_code == 2 and "empty.key: is empty" in empty.stderr
    profile = invoke(src, tmp_path / "out", "--key-file", key_file, "--profile", "nosuch")
    assert profile.exit_code == 2 and "nosuch" in profile.stderr
    same = invoke(src, src, "--key-file", key_file)
    assert same.exit_code == 2 and "must differ" in same.stderr
    both = invoke(src, tmp_path / "out", "--key-file", key_file, "--keep-dates", "--shift-dates")
    assert both.exit_code == 2


def test_no_patient_data_in_logs_or_output(identifiable_tree, tmp_path, key_file, caplog):
    secrets = set()
    for path in identifiable_tree.rglob("*"):
        if path.is_file():
            ds = read(path)
            for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate"):
                value = str(ds.get(keyword, "") or "").strip()
                if len(value) >= 3:
                    secrets.add(value)
    assert len(secrets) > 10
    # A corrupt file too: error messages must not quote its contents.
    src = copy_tree({p.relative_to(identifiable_tree).as_posix(): p
                     for p in identifiable_tree.rglob("*") if p.is_file()}, tmp_path / "in")
    add_corrupt(src)
    caplog.set_level(logging.DEBUG)
    result = invoke(src, tmp_path / "out", "--key-file", key_file)
    assert result.exit_code == 2  # the bundled truncated files and the corrupt ones
    for name in TRUNCATED:
        assert name in result.stderr
    report_text = (tmp_path / "out" / "deid_report.json").read_text()
    assert caplog.records, "expected log records"
    for text, where in ((caplog.text, "log"), (result.stdout, "stdout"),
                        (result.stderr, "stderr"), (report_text, "report")):
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"patient data in {where}: {len(leaked)} value(s)"


def test_map_only_when_asked_and_with_a_warning(tmp_path, key_file, caplog):
    src = small_tree(tmp_path / "in")
    caplog.set_level(logging.WARNING, logger="medsight")
    result = invoke(src, tmp_path / "out", "--key-file", key_file)
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == sorted(
        [*CLEAN, "deid_report.json", "deid_manifest.jsonl"])
    assert not list(tmp_path.glob("*.csv")) and "IDENTIFYING" not in caplog.text

    map_path = tmp_path / "secret" / "map.csv"
    result = invoke(src, tmp_path / "out2", "--key-file", key_file, "--map", map_path)
    assert result.exit_code == 0
    rows = list(csv.DictReader(map_path.open()))
    originals = {str(read(p).PatientID) for p in src.rglob("*.dcm")}
    assert {r["original_patient_id"] for r in rows} == originals
    for path in (tmp_path / "out2").rglob("*.dcm"):
        pseudonym = read(path).PatientID
        assert any(r["pseudonym"] == pseudonym for r in rows)
    assert "IDENTIFYING" in caplog.text and str(map_path) in caplog.text
    assert not list((tmp_path / "out2").rglob("*.csv"))
