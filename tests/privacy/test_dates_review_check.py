"""Date policies, the burned-in-text review list and the de-identified-input check."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medsight.errors import InputFileError
from medsight.privacy.check import is_deidentified, require_deidentified
from medsight.privacy.deid import DeidOptions, deidentify_tree

from .conftest import KEY_A, KEY_B, read

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# JPEG2000.dcm holds two dates of one patient (StudyDate 20040826, ContentDate 19970806);
# patient 77654033 has studies on two different days in two files of the DICOMDIR set.
FILES = {"JPEG2000.dcm": "JPEG2000.dcm",
         "cr.dcm": "dicomdirtests/77654033/CR1/6154",
         "ct.dcm": "dicomdirtests/77654033/CT2/17136"}


def _day(value: str) -> dt.date:
    return dt.datetime.strptime(value, "%Y%m%d").date()


@pytest.fixture
def dated_tree(tmp_path, bundled) -> Path:
    src = _mkdir(tmp_path / "in")
    for name, rel in FILES.items():
        shutil.copyfile(bundled[rel], src / name)
    return src


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _run(src: Path, out: Path, dates: str, key: bytes = KEY_A):
    return deidentify_tree(src, out, DeidOptions(key=key, dates=dates))


def test_shift_keeps_intervals_within_a_patient(dated_tree, tmp_path):
    _run(dated_tree, tmp_path / "out", "shift")
    before = {n: read(dated_tree / n) for n in FILES}
    after = {n: read(tmp_path / "out" / n) for n in FILES}
    for name in FILES:
        assert after[name].StudyDate != before[name].StudyDate
        assert after[name].LongitudinalTemporalInformationModified == "MODIFIED"
        assert [c.CodeValue for c in after[name].DeidentificationMethodCodeSequence] == [
            "113100", "113107"]
        assert after[name].PatientBirthDate == ""  # not longitudinal: still removed
        assert after[name].get("StudyTime") == before[name].get("StudyTime")  # whole days
    j_before, j_after = before["JPEG2000.dcm"], after["JPEG2000.dcm"]
    assert (_day(j_after.StudyDate) - _day(j_after.ContentDate)) == (
        _day(j_before.StudyDate) - _day(j_before.ContentDate))
    # Across files of one patient: the same offset.
    assert (_day(after["ct.dcm"].StudyDate) - _day(after["cr.dcm"].StudyDate)) == (
        _day(before["ct.dcm"].StudyDate) - _day(before["cr.dcm"].StudyDate))
    shift = _day(after["cr.dcm"].StudyDate) - _day(before["cr.dcm"].StudyDate)
    assert dt.timedelta(days=-3650) <= shift <= dt.timedelta(days=-1)


def test_shift_depends_on_the_key(dated_tree, tmp_path):
    _run(dated_tree, tmp_path / "a", "shift", KEY_A)
    _run(dated_tree, tmp_path / "b", "shift", KEY_B)
    assert read(tmp_path / "a" / "cr.dcm").StudyDate != read(tmp_path / "b" / "cr.dcm").StudyDate


def test_remove_and_keep(dated_tree, tmp_path):
    _run(dated_tree, tmp_path / "removed", "remove")
    _run(dated_tree, tmp_path / "kept", "keep")
    original = read(dated_tree / "JPEG2000.dcm")
    removed, kept = read(tmp_path / "removed" / "JPEG2000.dcm"), read(tmp_path / "kept" / "JPEG2000.dcm")
    assert removed.StudyDate == "" and original.StudyDate.encode() not in (
        tmp_path / "removed" / "JPEG2000.dcm").read_bytes()
    assert kept.StudyDate == original.StudyDate and kept.ContentDate == original.ContentDate
    assert kept.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert kept.PatientBirthDate == ""


def test_burned_in_candidates_are_listed_for_review(tmp_path, key_file):
    src = _mkdir(tmp_path / "in")
    ct = read(Path(get_testdata_file("CT_small.dcm")))
    ct.BurnedInAnnotation = "YES"
    ct.save_as(src / "ct_burned.dcm")
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "ct_plain.dcm")
    _mkdir(src / "us")
    shutil.copyfile(get_testdata_file("examples_ybr_color.dcm"), src / "us" / "echo.dcm")
    report = deidentify_tree(src, tmp_path / "out", DeidOptions(key=KEY_A))
    review = {entry["file"]: entry for entry in report.review}
    assert set(review) == {"ct_burned.dcm", "us/echo.dcm"}
    assert review["ct_burned.dcm"]["reasons"] == ["BurnedInAnnotation is YES"]
    assert review["us/echo.dcm"]["modality"] == "US"
    assert review["us/echo.dcm"]["sop_class"].startswith("Ultrasound")
    text = repr(report.review)
    for value in (str(ct.PatientName), str(ct.PatientID)):
        assert value not in text


def test_require_deidentified(run_a):
    original_path = run_a.src / "CT_small.dcm"
    original, cleaned = read(original_path), read(run_a.out / "CT_small.dcm")
    with pytest.raises(InputFileError) as excinfo:
        require_deidentified(original, original_path)
    assert str(original_path) in str(excinfo.value)
    assert "not de-identified" in str(excinfo.value) and "medsight deid" in str(excinfo.value)
    require_deidentified(cleaned, run_a.out / "CT_small.dcm")
    assert is_deidentified(cleaned) and not is_deidentified(original)


@pytest.mark.parametrize("value, ok", [("YES", True), ("yes ", True), ("NO", False), ("", False)])
def test_require_deidentified_accepts_image_meta(value, ok):
    meta = {"PatientIdentityRemoved": value, "modality": "CT"}
    assert is_deidentified(meta) is ok
    if ok:
        require_deidentified(meta, "img.dcm")
    else:
        with pytest.raises(InputFileError, match="img.dcm: not de-identified"):
            require_deidentified(meta, "img.dcm")
    assert not is_deidentified({"modality": "CT"})
