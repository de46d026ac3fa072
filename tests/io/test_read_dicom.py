"""Single DICOM files: modality units, photometric handling, geometry and metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medsight.errors import InputFileError
from medsight.io import read_image, spacing_of

from .dicom_builders import CT_SMALL, MR_SMALL, set_pixels


def tiny_dicom(path: Path, pixels: np.ndarray, **attrs: object) -> Path:
    """A minimal uncompressed DICOM file: (rows, cols), (frames, rows, cols) or (rows, cols, 3)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    rgb = pixels.ndim == 3 and pixels.shape[-1] == 3
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    elif pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_ct_small_is_read_in_hounsfield_units_with_its_geometry() -> None:
    ds = pydicom.dcmread(CT_SMALL)
    image = read_image(CT_SMALL)
    assert image.shape == (1, 128, 128) and image.dtype.is_floating_point
    assert image.min() < -800 and image.max() > 1000  # intercept -1024 applied
    assert image.meta["spacing"] == tuple(float(v) for v in ds.PixelSpacing)
    assert spacing_of(image) == pytest.approx(image.meta["spacing"])
    assert image.meta["modality"] == "CT"
    assert image.meta["format"] == "dicom"
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert image.meta[key] == str(ds[key].value)
    # Axis-aligned orientation: the RAS origin is the LPS position with x and y negated.
    ipp = [float(v) for v in ds.ImagePositionPatient]
    assert image.affine[:3, 3].tolist() == pytest.approx([-ipp[0], -ipp[1], ipp[2]])


def test_patient_identity_never_reaches_metadata() -> None:
    ds = pydicom.dcmread(CT_SMALL)
    meta = read_image(CT_SMALL).meta
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(meta)
    assert str(ds.PatientName) not in str(meta)
    assert str(ds.PatientID) not in str(meta)
    assert meta["PatientIdentityRemoved"] == ""


def test_mr_small() -> None:
    image = read_image(MR_SMALL)
    assert image.shape == (1, 64, 64)
    assert image.meta["modality"] == "MR"


def test_monochrome1_is_inverted_after_rescale(tmp_path: Path, ct_dataset: Dataset) -> None:
    ct_dataset.PhotometricInterpretation = "MONOCHROME1"
    ct_dataset.save_as(tmp_path / "mono1.dcm")
    normal = read_image(CT_SMALL)
    inverted = read_image(tmp_path / "mono1.dcm")
    expected = normal.max() + normal.min() - normal
    assert np.allclose(inverted.numpy(), expected.numpy())


def test_rgb_becomes_three_channels(tmp_path: Path) -> None:
    pixels = np.zeros((4, 5, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 10, 20, 30
    image = read_image(tiny_dicom(tmp_path / "rgb.dcm", pixels))
    assert image.shape == (3, 4, 5)
    assert image[:, 0, 0].tolist() == [10, 20, 30]


def test_multiframe_is_a_volume_with_frame_spacing(tmp_path: Path) -> None:
    frames = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = tiny_dicom(
        tmp_path / "frames.dcm",
        frames,
        PixelSpacing=[0.4, 0.6],
        SpacingBetweenSlices=2.5,
        SliceThickness=3.0,
        RescaleSlope=2,
        RescaleIntercept=-10,
    )
    image = read_image(path)
    assert image.shape == (1, 3, 4, 5)
    assert image.meta["spacing"] == (2.5, 0.4, 0.6)
    assert np.array_equal(image[0].numpy(), frames * 2.0 - 10)


def test_bundled_multiframe_files() -> None:
    dose = read_image(get_testdata_file("rtdose.dcm"))
    assert dose.shape == (1, 15, 10, 10)
    assert dose.meta["spacing"] == (5.0, 10.0, 10.0)  # frame step from GridFrameOffsetVector
    rgb = read_image(get_testdata_file("SC_rgb_rle_2frame.dcm"))  # RLE, decoded by pydicom
    assert rgb.shape == (3, 2, 100, 100)


@pytest.mark.parametrize("name", ["examples_palette.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_palette_and_ybr_become_rgb(name: str) -> None:
    image = read_image(get_testdata_file(name))
    assert image.shape[0] == 3 and image.ndim == 3


def test_decision_is_by_content_not_extension(tmp_path: Path) -> None:
    no_extension = tmp_path / "IM0001"
    no_extension.write_bytes(Path(CT_SMALL).read_bytes())
    assert read_image(no_extension).meta["modality"] == "CT"


def test_dicom_without_preamble_is_read(tmp_path: Path, ct_dataset: Dataset) -> None:
    path = tmp_path / "raw"
    ct_dataset.preamble = None
    del ct_dataset.file_meta
    ct_dataset.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
    assert Path(path).read_bytes()[128:132] != b"DICM"
    image = read_image(path)
    assert image.meta["format"] == "dicom" and image.min() < -800


def test_unusable_dicoms_name_their_problem(tmp_path: Path, ct_dataset: Dataset) -> None:
    with pytest.raises(InputFileError, match="no pixel data"):
        read_image(get_testdata_file("rtplan.dcm"))
    with pytest.raises(InputFileError, match="truncated DICOM: pixel data has 8130 of 8192 bytes"):
        read_image(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(InputFileError, match="cannot decode JPEG Extended") as info:
        read_image(get_testdata_file("JPEG-lossy.dcm"))
    assert "\n" not in str(info.value)
    pixels = ct_dataset.pixel_array.copy()
    pixels[0, 0] = 1000
    set_pixels(ct_dataset, pixels)
    del ct_dataset.PixelData
    ct_dataset.save_as(tmp_path / "stripped.dcm")
    with pytest.raises(InputFileError, match="truncated DICOM"):
        read_image(tmp_path / "stripped.dcm")
