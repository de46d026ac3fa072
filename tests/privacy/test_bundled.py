"""De-identification of every pydicom bundled file that loads: the issue's acceptance checks."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from medsight.privacy.profile import BASIC, Action

from .conftest import TRUNCATED, Run, read

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REMOVED = {keyword for keyword, action in BASIC.actions.items() if action is Action.REMOVE}
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
               "InstitutionAddress", "ReferringPhysicianName")


def outputs(run: Run) -> dict[str, Path]:
    """Relative path -> output file, for every de-identified file (not the report or manifest)."""
    return {p.relative_to(run.out).as_posix(): p for p in sorted(run.out.rglob("*"))
            if p.is_file() and p.name not in ("deid_report.json", "deid_manifest.jsonl")}


def walk(ds: Dataset, depth: int = 0):
    for elem in ds:
        yield elem, depth
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item, depth + 1)


def test_every_loadable_file_is_processed_except_the_truncated(run_a, bundled):
    report = run_a.report
    assert {Path(source).name for source, _ in report.failures} == TRUNCATED
    assert all(problem.startswith("truncated DICOM") for _, problem in report.failures)
    assert report.n_ok == len(bundled) - len(TRUNCATED)
    assert set(outputs(run_a)) == {rel for rel in bundled if Path(rel).name not in TRUNCATED}


def test_report_json(run_a):
    report = json.loads((run_a.out / "deid_report.json").read_text())
    assert report["profile"] == "basic" and report["dates"] == "remove"
    assert report["n_files"] == report["n_ok"] + report["n_failed"]
    assert report["n_failed"] == len(TRUNCATED)
    assert {f["file"] for f in report["failures"]} == TRUNCATED  # relative to IN
    assert report["review"] == run_a.report.review
    for entry in report["review"]:
        assert (run_a.out / entry["file"]).is_file()


def test_no_removed_attribute_or_private_tag_remains(run_a):
    for rel, path in outputs(run_a).items():
        for elem, depth in walk(read(path)):
            assert elem.keyword not in REMOVED, f"{rel}: {elem.keyword} at depth {depth}"
            assert not elem.tag.is_private, f"{rel}: private {elem.tag} at depth {depth}"
            assert not (0x6000 <= elem.tag.group <= 0x60FF), f"{rel}: overlay {elem.tag}"


def test_no_identifying_string_in_output_bytes(run_a):
    checked = 0
    for rel, path in outputs(run_a).items():
        original = read(run_a.src / rel)
        data = path.read_bytes()
        # Pixel data is passed through unchanged, and a short ID can occur in it by chance.
        pixels = original.get("PixelData")
        if pixels:
            data = data.replace(pixels, b"")
        for keyword in IDENTIFYING:
            value = str(original.get(keyword, "") or "").strip()
            if len(value) >= 3:
                checked += 1
                assert value.encode("utf-8") not in data, f"{rel}: original {keyword} in output"
    assert checked > 100


def test_pixel_data_is_bit_identical(run_a):
    compared = 0
    for rel, path in outputs(run_a).items():
        original, result = read(run_a.src / rel), read(path)
        assert original.get("PixelData") == result.get("PixelData"), rel
        compared += "PixelData" in original
    assert compared > 80


def test_marked_as_deidentified(run_a):
    for rel, path in outputs(run_a).items():
        ds = read(path)
        assert ds.PatientIdentityRemoved == "YES", rel
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        if "SOPInstanceUID" in ds:
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID, rel


def test_uids_are_consistent_within_a_study_and_depend_on_the_key(run_a, run_b):
    new_uids: dict[str, set[str]] = defaultdict(set)
    for rel, path in outputs(run_a).items():
        original = read(run_a.src / rel)
        if "StudyInstanceUID" not in original:
            continue
        result, other_key = read(path), read(run_b.out / rel)
        assert result.StudyInstanceUID != original.StudyInstanceUID
        assert result.StudyInstanceUID.startswith("2.25.") and len(result.StudyInstanceUID) <= 64
        assert other_key.StudyInstanceUID != result.StudyInstanceUID
        assert result.SOPClassUID == original.SOPClassUID  # class UIDs are not identifying
        new_uids[original.StudyInstanceUID].add(result.StudyInstanceUID)
    assert any(len(uids) == 1 for uids in new_uids.values())
    assert all(len(uids) == 1 for uids in new_uids.values())
    study_of_shared = [rel for rel in ("MR_small.dcm", "MR_small_RLE.dcm")]
    a, b = (read(run_a.out / rel) for rel in study_of_shared)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID


def test_referenced_uids_in_sequences_are_replaced_consistently(run_a):
    # A SEG references its source images in nested sequences; a DICOMDIR its instances.
    seg = read(run_a.out / "liver_1frame.dcm")
    original = read(run_a.src / "liver_1frame.dcm")
    refs = [e.value for e, _ in walk(seg) if e.keyword == "ReferencedSOPInstanceUID"]
    old = {e.value for e, _ in walk(original) if e.keyword == "ReferencedSOPInstanceUID"}
    assert refs and not old & set(refs)
    assert all(uid.startswith("2.25.") for uid in refs)
    classes = [e.value for e, _ in walk(seg) if e.keyword == "ReferencedSOPClassUID"]
    assert classes and all(not uid.startswith("2.25.") for uid in classes)

    dicomdir = run_a.out / "dicomdirtests" / "DICOMDIR"
    fileset = FileSet(read(dicomdir))  # also proves the record offsets are valid
    instances = list(fileset)
    assert len(instances) == 31
    for instance in instances:
        assert instance.load().SOPInstanceUID == instance.ReferencedSOPInstanceUIDInFile
    names = {str(r.PatientName) for r in read(dicomdir).DirectoryRecordSequence if "PatientName" in r}
    assert names and all(name.startswith("ANON-") for name in names)


def test_same_key_gives_byte_identical_output(run_a, run_a_again):
    first, second = outputs(run_a), outputs(run_a_again)
    assert first.keys() == second.keys()
    for rel in first:
        assert first[rel].read_bytes() == second[rel].read_bytes(), rel
    assert (run_a.out / "deid_report.json").read_bytes() == (
        run_a_again.out / "deid_report.json").read_bytes()


def test_pseudonym_links_a_patient_and_depends_on_the_key(run_a, run_b):
    by_patient: dict[str, set[str]] = defaultdict(set)
    for rel, path in outputs(run_a).items():
        original = read(run_a.src / rel)
        if str(original.get("PatientID", "") or "").strip():
            result = read(path)
            assert result.PatientID.startswith("ANON-") and str(result.PatientName) == result.PatientID
            assert read(run_b.out / rel).PatientID != result.PatientID
            by_patient[original.PatientID].add(result.PatientID)
    assert by_patient and all(len(p) == 1 for p in by_patient.values())
    assert len({next(iter(p)) for p in by_patient.values()}) == len(by_patient)


@pytest.mark.parametrize("rel", ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_encoding_is_kept(run_a, rel):
    original, result = read(run_a.src / rel), read(run_a.out / rel)
    assert result.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert result.original_encoding == original.original_encoding
