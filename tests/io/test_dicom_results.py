"""Result objects built with highdicom: SEG, Comprehensive SR and Secondary Capture over pydicom's CT_small."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medsight.io.dicom_results import (
    Algorithm,
    ClassificationFinding,
    classification_sr,
    patient_orientation,
    secondary_capture,
)
from medsight.io.dicom_seg import segmentation


@pytest.fixture(scope="module")
def ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def same_study(result: pydicom.Dataset, source: pydicom.Dataset) -> None:
    assert (result.StudyInstanceUID, result.PatientID) == (source.StudyInstanceUID, source.PatientID)
    assert result.SeriesInstanceUID != source.SeriesInstanceUID
    assert result.SOPInstanceUID != source.SOPInstanceUID


def test_seg_of_a_hand_made_mask_reads_back_identical(ct):
    mask = np.zeros((128, 128), np.uint8)
    mask[30:50, 60:90] = 1
    mask[80:84, 10:14] = 2
    seg = roundtrip(segmentation([ct], mask, Algorithm("unit"), ("nodule", "vessel")))
    same_study(seg, ct)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    parsed = hd.seg.Segmentation.from_dataset(seg)
    assert [d.SegmentLabel for d in parsed.SegmentSequence] == ["nodule", "vessel"]
    pixels = parsed.get_pixels_by_source_instance([ct.SOPInstanceUID], segment_numbers=[1, 2])[0]
    np.testing.assert_array_equal(pixels[..., 0], mask == 1)
    np.testing.assert_array_equal(pixels[..., 1], mask == 2)


def test_seg_checks_the_mask(ct):
    with pytest.raises(ValueError, match="1 source image"):
        segmentation([ct], np.zeros((2, 128, 128), np.uint8), Algorithm("unit"))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        segmentation([ct], np.full((128, 128), 2, np.uint8), Algorithm("unit"))


def test_sr_records_finding_probabilities_and_source(ct):
    finding = ClassificationFinding("nodule", {"no nodule": 0.25, "nodule": 0.75})
    sr = roundtrip(classification_sr([ct], finding, Algorithm("nodules", "1.2")))
    same_study(sr, ct)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    hd.sr.ComprehensiveSR.from_dataset(sr)  # highdicom parses its own output back
    text = str(sr)
    assert "Probability of nodule" in text and "0.75" in text and "nodules" in text
    codes = [item.ConceptCodeSequence[0].CodeMeaning for item in _walk(sr.ContentSequence)
             if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeMeaning == "Finding"]
    assert codes == ["nodule"]


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def test_secondary_capture_of_a_heatmap(ct):
    rgb = np.zeros((128, 128, 3), np.float32)
    rgb[..., 0] = np.linspace(0, 1, 128)[None]
    sc = roundtrip(secondary_capture(ct, rgb, Algorithm("nodules")))
    same_study(sc, ct)
    assert sc.pixel_array.shape == (128, 128, 3) and sc.pixel_array[0, -1, 0] == 255
    assert [float(v) for v in sc.PixelSpacing] == pytest.approx([float(v) for v in ct.PixelSpacing])
    assert "medsight nodules heatmap" == sc.SeriesDescription


def test_patient_orientation_from_cosines(ct):
    assert patient_orientation(ct) == ("L", "P")  # axial
    sagittal = pydicom.Dataset()
    sagittal.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    assert patient_orientation(sagittal) == ("P", "F")
    assert patient_orientation(pydicom.Dataset()) == ("L", "P")


def test_a_uid_seed_makes_the_same_objects_again(ct):
    finding = ClassificationFinding("nodule", {"no nodule": 0.25, "nodule": 0.75})
    rgb = np.zeros((8, 8, 3), np.uint8)

    def uids(seed):
        sr = classification_sr([ct], finding, Algorithm("nodules"), uid_seed=seed)
        sc = secondary_capture(ct, rgb, Algorithm("nodules"), uid_seed=seed)
        return [str(ds.SeriesInstanceUID) for ds in (sr, sc)] + [str(ds.SOPInstanceUID) for ds in (sr, sc)]

    once, again, other = uids("job-1"), uids("job-1"), uids("job-2")
    assert once == again and len(set(once)) == 4  # repeatable, and the four UIDs differ
    assert not set(once) & set(other) and not set(once) & set(uids(None))
    assert uids(None) != uids(None)  # without a seed: new UIDs every time
    assert all(len(u) <= 64 and pydicom.uid.UID(u).is_valid for u in once)
