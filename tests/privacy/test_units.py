"""The profile table, the keyed replacements and the dataset transform, on small datasets."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from medsight.errors import InputFileError, MedsightError
from medsight.privacy.deid import read_dicom
from medsight.privacy.keys import Keyring, load_key
from medsight.privacy.profile import BASIC, Action, get_profile, resolve
from medsight.privacy.sweep import collect, sweep
from medsight.privacy.transform import Deidentifier

from .conftest import KEY_A, KEY_B

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

# --- the table --------------------------------------------------------------------------


def test_every_table_keyword_is_a_dicom_keyword():
    unknown = [k for k in BASIC.codes if tag_for_keyword(k) is None]
    assert not unknown
    assert len(BASIC.codes) > 300


@pytest.mark.parametrize("keyword, code, action", [
    ("PatientName", "Z", Action.EMPTY), ("PatientBirthDate", "Z", Action.EMPTY),
    ("AccessionNumber", "Z", Action.EMPTY), ("StudyInstanceUID", "U", Action.UID),
    ("ReferencedSOPInstanceUID", "U", Action.UID), ("FrameOfReferenceUID", "U", Action.UID),
    ("InstitutionName", "X/Z/D", Action.DUMMY), ("InstitutionAddress", "X", Action.REMOVE),
    ("OtherPatientIDsSequence", "X", Action.REMOVE), ("DeviceSerialNumber", "X/Z/D", Action.DUMMY),
    ("AcquisitionDate", "X/Z", Action.EMPTY), ("ContentDate", "Z/D", Action.DUMMY),
    ("SourceImageSequence", "X/Z/U*", Action.UID), ("EthnicGroup", "X", Action.REMOVE),
    ("RequestAttributesSequence", "X", Action.REMOVE), ("StationName", "X/Z/D", Action.DUMMY),
])
def test_table_entries(keyword, code, action):
    assert BASIC.codes[keyword] == code
    assert BASIC.action(keyword) is action


def test_class_uids_are_not_replaced():
    for keyword in ("SOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID", "CodingSchemeUID"):
        assert BASIC.action(keyword) is None


def test_resolve_and_unknown_profile():
    assert resolve("K") is Action.KEEP and resolve("X/Z/U*") is Action.UID
    assert get_profile("basic") is BASIC
    with pytest.raises(MedsightError, match="unknown de-identification profile 'strict'"):
        get_profile("strict")


# --- keys -------------------------------------------------------------------------------


def test_keyring_is_deterministic_and_keyed():
    a, a2, b = Keyring(KEY_A), Keyring(KEY_A), Keyring(KEY_B)
    uid = "1.2.840.113619.2.1.1.322987881.621.736170080.681"
    assert a.uid(uid) == a2.uid(uid) != b.uid(uid)
    assert UID(a.uid(uid)).is_valid and a.uid(uid).startswith("2.25.")
    assert a.uid(uid) != a.uid(uid + "1")
    assert a.pseudonym("id:123") == a2.pseudonym("id:123") != b.pseudonym("id:123")
    assert a.pseudonym("id:123").startswith("ANON-") and len(a.pseudonym("id:123")) == 17
    offsets = {a.day_offset(f"id:{i}") for i in range(200)}
    assert all(-3650 <= d <= -1 for d in offsets) and len(offsets) > 150


def test_load_key(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="medsight"):
        assert len(load_key(None)) == 32
    assert "random key" in caplog.text
    (tmp_path / "k").write_bytes(b"  a-long-enough-secret-key \n")
    assert load_key(tmp_path / "k") == b"a-long-enough-secret-key"
    with pytest.raises(MedsightError, match="missing.key: not found"):
        load_key(tmp_path / "missing.key")
    (tmp_path / "empty.key").write_bytes(b"")
    with pytest.raises(MedsightError, match="empty.key: is empty"):
        load_key(tmp_path / "empty.key")


# --- the transform ----------------------------------------------------------------------


def _item(**values) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _dataset() -> Dataset:
    ds = _item(PatientName="Doe^Jane", PatientID="MRN-4711", PatientBirthDate="19700102",
               StudyInstanceUID="1.2.3.4", SOPInstanceUID="1.2.3.4.5", SOPClassUID=CT_IMAGE,
               InstitutionName="St Elsewhere", Manufacturer="St Elsewhere Imaging",
               StationName="", StudyDate="20200110", StudyTime="101010", Modality="CT",
               CalibrationDate="20190101", PatientSex="F")
    ref = _item(ReferencedSOPClassUID=CT_IMAGE, ReferencedSOPInstanceUID="1.2.3.4.9",
                InstitutionAddress="1 Main St")  # X attribute one level down
    ds.ReferencedImageSequence = Sequence([ref])
    ds.RequestAttributesSequence = Sequence([_item(RequestedProcedureID="RP1")])
    deep = _item(ReferencedSOPInstanceUID="1.2.3.4.10", ImageComments="scan of Jane")
    ds.SourceImageSequence = Sequence([_item(ReferencedImageSequence=Sequence([deep]))])
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "keep me")
    block.add_new(0x11, "LO", "drop me")
    ds.add_new(0x60003000, "OW", b"\x00\x01")  # an overlay plane
    ds.add_new(0x60000010, "US", 2)
    return ds


def test_transform_at_every_depth():
    ds = _dataset()
    deid = Deidentifier(BASIC, Keyring(KEY_A))
    deid.dataset(ds)
    keys = Keyring(KEY_A)
    assert ds.PatientID == keys.pseudonym("id:MRN-4711") == str(ds.PatientName)
    assert deid.pseudonyms == {ds.PatientID: "MRN-4711"}
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert ds.StudyInstanceUID == keys.uid("1.2.3.4") and ds.SOPClassUID == CT_IMAGE
    assert ds.InstitutionName == "ANONYMIZED" and ds.StationName == ""  # empty stays empty
    assert ds.StudyDate == "" and ds.CalibrationDate == "19000101"  # unlisted date: dummy
    assert ds.StudyTime == ""
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == keys.uid("1.2.3.4.9")
    assert ref.ReferencedSOPClassUID == CT_IMAGE
    assert "InstitutionAddress" not in ref
    deep = ds.SourceImageSequence[0].ReferencedImageSequence[0]
    assert deep.ReferencedSOPInstanceUID == keys.uid("1.2.3.4.10") and "ImageComments" not in deep
    assert "RequestAttributesSequence" not in ds
    assert not any(elem.tag.is_private for elem in ds)
    assert not any(elem.tag.group == 0x6000 for elem in ds)


def test_private_allow_list():
    ds = _dataset()
    Deidentifier(BASIC, Keyring(KEY_A), keep_private=("ACME 1.0:10",)).dataset(ds)
    block = ds.private_block(0x0009, "ACME 1.0")
    assert block[0x10].value == "keep me" and 0x00091011 not in ds
    ds = _dataset()
    deid = Deidentifier(BASIC, Keyring(KEY_A), keep_private=("ACME 1.0",))
    deid.dataset(ds)
    deid.mark(ds)
    assert 0x00091011 in ds
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113111"]


def test_sweep_catches_identifiers_in_kept_text():
    ds = _dataset()
    found = collect(ds)
    assert {"doe^jane", "doe jane", "mrn-4711", "st elsewhere"} <= found
    Deidentifier(BASIC, Keyring(KEY_A)).dataset(ds)
    assert sweep(ds, found) == 1
    assert ds.Manufacturer == "ANONYMIZED" and ds.Modality == "CT"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_shift_moves_dates_and_drops_invalid_ones():
    ds = _item(PatientID="P1", StudyDate="20200301", AcquisitionDateTime="20200301120000.5+0100",
               ContentDate="2020", SeriesDate="20201345")
    deid = Deidentifier(BASIC, Keyring(KEY_A), dates="shift")
    deid.dataset(ds)
    offset = Keyring(KEY_A).day_offset("id:P1")
    expected = (dt.date(2020, 3, 1) + dt.timedelta(days=offset)).strftime("%Y%m%d")
    assert ds.StudyDate == expected
    assert ds.AcquisitionDateTime == expected + "120000.5+0100"
    assert ds.ContentDate == "" and ds.SeriesDate == ""  # not a full valid date: dropped


# --- reading: pydicom accepts truncated files quietly, medsight must not -----------------


@pytest.mark.parametrize("name, cut", [
    ("CT_small.dcm", 0.5),  # inside the pixel data
    ("CT_small.dcm", 0.02),  # inside the header
    ("CT_small.dcm", 0.9),
    ("JPEG2000.dcm", -1),  # inside the encapsulated pixel data's delimiter
    ("JPEG2000.dcm", -200),  # inside an encapsulated fragment
    ("rtplan.dcm", 0.6),  # inside a sequence
])
def test_truncated_files_are_refused(tmp_path, bundled, name, cut):
    data = bundled[name].read_bytes()
    path = tmp_path / name
    path.write_bytes(data[:cut] if isinstance(cut, int) else data[: int(len(data) * cut)])
    with pytest.raises(InputFileError, match="truncated DICOM"):
        read_dicom(path)


def test_whole_files_are_read(bundled):
    for name in ("CT_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "image_dfl.dcm"):
        assert len(read_dicom(bundled[name]))
