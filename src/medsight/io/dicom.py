"""Single DICOM files, one slice or one multi-frame volume, read with pydicom.

Pixel values are returned in modality units: Rescale Slope/Intercept (or a Modality LUT) is
applied, so CT is in Hounsfield units; MONOCHROME1 images are inverted so that higher always
means brighter; colour (RGB, YBR, palette) becomes 3 channels. No VOI windowing is applied:
intensity normalisation belongs to the transforms.

Axis convention: a single frame has array axes ``(row, col)`` and spacing
``(PixelSpacing[0], PixelSpacing[1])`` (row spacing first, as DICOM stores it); a multi-frame
file has ``(frame, row, col)``. Where ImageOrientationPatient/ImagePositionPatient are present,
the affine maps these indices to patient coordinates in **RAS** mm (DICOM's LPS with x and y
negated), matching NIfTI and MONAI; otherwise it is a plain diagonal of the spacing.
"""

from __future__ import annotations

import re
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pydicom
from monai.data import MetaTensor
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medsight.errors import InputFileError
from medsight.io import limits
from medsight.io.validate import checked_image, one_line

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
GEOMETRY = "geometry (PixelSpacing, ImageOrientationPatient, ImagePositionPatient, slice spacing)"


def read_dicom(path: str | Path, *, force: bool = False) -> MetaTensor:
    """Read one DICOM file as a ``(C, row, col)`` or ``(C, frame, row, col)`` image."""
    ds = load_dataset(path, force=force)
    with corrupt_elements(path):
        return _image(ds, path)


def _image(ds: Dataset, path: str | Path) -> MetaTensor:
    pixels = invert_monochrome1(modality_pixels(ds, path), ds)
    n_frames = int(ds.get("NumberOfFrames") or 1)
    is_colour = pixels.ndim == (4 if n_frames > 1 else 3)
    array = np.moveaxis(pixels, -1, 0) if is_colour else pixels[None]

    with header_values(path, GEOMETRY):
        row_sp, col_sp = pixel_spacing(ds)
        frame_sp = frame_spacing(ds) if n_frames > 1 else None
        spacing = (row_sp, col_sp) if frame_sp is None else (frame_sp, row_sp, col_sp)
        affine = None
        orientation = image_orientation(ds)
        if orientation is not None:
            row_dir, col_dir = orientation
            normal = np.cross(row_dir, col_dir)
            # A DICOM row runs along `row_dir`, so the column index moves along it (and vice versa).
            axes = [col_dir * row_sp, row_dir * col_sp]
            axes = axes + [normal] if frame_sp is None else [normal * frame_sp, *axes]
            affine = ras_affine(axes, image_position(ds))
    meta = dicom_meta(ds)
    return checked_image(array, path, format="dicom", spacing=spacing, affine=affine, **meta)


@contextmanager
def corrupt_elements(path: str | Path) -> Iterator[None]:
    """pydicom decodes elements when they are first used; one whose bytes do not fit its VR
    (or with a VR that does not exist) is reported by its tag, never by its value, which
    could be patient data."""
    try:
        yield
    except (BytesLengthException, NotImplementedError) as exc:
        found = re.search(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)", str(exc))
        tag = f" ({found[1]},{found[2]})" if found else ""
        raise InputFileError(path, f"corrupt DICOM element{tag}: its value does not fit its "
                                   "value representation") from exc


@contextmanager
def header_values(path: str | Path, what: str) -> Iterator[None]:
    """Header values that do not parse as the numbers they must be (``PixelSpacing = "0Ñ0"``,
    one value where six belong) are the file's problem: one line naming it and ``what``."""
    try:
        yield
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise InputFileError(path, f"invalid {what} in the header: {one_line(exc, 160)}") from exc


def load_dataset(
    path: str | Path, *, force: bool = False, defer_size: str | None = None
) -> Dataset:
    """``pydicom.dcmread`` with its failures turned into one-line :class:`InputFileError`."""
    if not force:
        check_inflated_size(path)
    try:
        ds = pydicom.dcmread(path, force=force, defer_size=defer_size)
    except InvalidDicomError:
        raise InputFileError(path, "not a DICOM file (no 'DICM' marker at byte 128)") from None
    except Exception as exc:  # pydicom raises many types (struct, EOF, Value...) on corrupt headers
        raise InputFileError(path, f"unreadable DICOM header: {one_line(exc)}") from exc
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None or "TransferSyntaxUID" not in file_meta:
        # Preamble-less files have no file meta; the encoding pydicom parsed them with is
        # the transfer syntax for native pixel data, which the decoders insist on knowing.
        implicit, little = ds.original_encoding
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.file_meta = file_meta if file_meta is not None else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian if little is False else syntax
    return ds


def check_inflated_size(path: str | Path) -> None:
    """Refuse a Deflated Explicit VR file whose data set inflates beyond the size limit.

    pydicom inflates the whole data set in memory before parsing any of it, so a few MB of
    deflated zeros would become gigabytes; this streams through it counting bytes instead.
    """
    try:
        meta = read_file_meta_info(path)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return
        start = 128 + 4 + 12 + int(meta.FileMetaInformationGroupLength)
    except Exception:  # noqa: BLE001 - an unreadable meta is reported by dcmread itself
        return
    limit = 2 * limits.MAX_VOXELS  # bytes: the pixel data of a 16-bit image at the limit
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while chunk := fh.read(1 << 20):
            while chunk:
                try:
                    total += len(inflater.decompress(chunk, 1 << 24))
                except zlib.error:
                    return  # corrupt stream: dcmread reports it
                chunk = inflater.unconsumed_tail
                if total > limit:
                    raise InputFileError(path, f"deflated data set inflates to over {limit:,} "
                                               "bytes (a decompression bomb?)")


def is_headerless_dicom(path: str | Path) -> bool:
    """Whether a file without the 'DICM' preamble still parses as an image dataset.

    Old scanners and some exports write raw datasets; ``force=True`` would parse almost any
    bytes, so only a dataset with pixel data and an image size counts.
    """
    try:
        ds = pydicom.dcmread(path, force=True, defer_size="1 KB")
        return any(k in ds for k in PIXEL_KEYWORDS) and "Rows" in ds and "Columns" in ds
    except Exception:  # anything that fails to parse is simply not DICOM
        return False


def modality_pixels(ds: Dataset, path: str | Path) -> np.ndarray:
    """Decoded pixels in modality units: ``([frames,] rows, cols[, 3])``, before MONOCHROME1."""
    if not any(k in ds for k in PIXEL_KEYWORDS):
        raise InputFileError(path, _no_pixels_problem(ds))
    check_pixel_count(ds, path)
    try:
        arr = ds.pixel_array  # YBR is converted to RGB by pydicom's default decoding
    except Exception as exc:  # decoders raise ValueError, RuntimeError, NotImplementedError...
        raise InputFileError(path, _decode_problem(ds, exc)) from exc
    with header_values(path, "palette, LUT or rescale attributes"):
        if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
            return apply_color_lut(arr, ds)[..., :3]
        if int(ds.get("SamplesPerPixel") or 1) > 1:
            return arr
        arr = apply_modality_lut(arr, _rescale_source(ds))
        if ds.get("DoseGridScaling"):  # RT Dose keeps its Gy-per-unit factor here, not in Rescale
            arr = arr * float(ds.DoseGridScaling)
        return arr


def check_pixel_count(ds: Dataset, path: str | Path) -> int:
    """Frames × rows × columns × samples from the header, checked before decoding allocates it."""
    try:
        shape = [int(ds.get("NumberOfFrames") or 1), int(ds.Rows), int(ds.Columns),
                 int(ds.get("SamplesPerPixel") or 1)]
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        problem = f"invalid image size attributes (Rows, Columns, NumberOfFrames): {one_line(exc, 120)}"
        raise InputFileError(path, problem) from None
    return limits.check_image_size(path, shape)


def invert_monochrome1(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Flip MONOCHROME1 (min = white) to the MONOCHROME2 convention, within its own range."""
    if ds.get("PhotometricInterpretation") != "MONOCHROME1":
        return pixels
    pixels = pixels.astype(np.float64)
    return pixels.max() + pixels.min() - pixels


def find_attr(ds: Dataset, keyword: str) -> Any:
    """An attribute from the top level or, for enhanced multi-frame files, the functional groups.

    Per-frame groups are searched in their first frame only.
    """
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    for groups_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if not groups:
            continue
        for element in groups[0]:
            if element.VR == "SQ" and element.value and keyword in element.value[0]:
                return element.value[0][keyword].value
    return None


def pixel_spacing(ds: Dataset) -> tuple[float, float]:
    """(row, col) spacing in mm; projection X-rays only have ImagerPixelSpacing; else 1.0."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = find_attr(ds, keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    return 1.0, 1.0


def frame_spacing(ds: Dataset) -> float:
    """Distance between frames: SpacingBetweenSlices, RT Dose offsets, SliceThickness, else 1."""
    spacing = find_attr(ds, "SpacingBetweenSlices")
    if spacing is not None and float(spacing) > 0:
        return float(spacing)
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and len(offsets) > 1:
        return float(np.median(np.abs(np.diff(np.asarray(offsets, dtype=float)))))
    thickness = find_attr(ds, "SliceThickness")
    if thickness is not None and float(thickness) > 0:
        return float(thickness)
    return 1.0


def image_orientation(ds: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """The (row, column) direction cosines of ImageOrientationPatient, or None if absent."""
    value = find_attr(ds, "ImageOrientationPatient")
    if value is None or len(value) != 6:
        return None
    cosines = np.asarray(value, dtype=float)
    row_dir, col_dir = cosines[:3], cosines[3:]
    if not np.isclose(np.linalg.norm(np.cross(row_dir, col_dir)), 1.0, atol=1e-3):
        return None  # degenerate (e.g. all zeros): no usable geometry
    return row_dir, col_dir


def image_position(ds: Dataset) -> np.ndarray:
    value = find_attr(ds, "ImagePositionPatient")
    return np.zeros(3) if value is None or len(value) != 3 else np.asarray(value, dtype=float)


def ras_affine(axes_lps: Sequence[np.ndarray], origin_lps: np.ndarray) -> np.ndarray:
    """4x4 RAS affine from the LPS step vector of each array axis and the first voxel's centre."""
    affine = np.eye(4)
    for i, axis in enumerate(axes_lps):
        affine[:3, i] = axis
    affine[:3, 3] = origin_lps
    return LPS_TO_RAS @ affine


def dicom_meta(ds: Dataset) -> dict[str, Any]:
    """The metadata medsight keeps: modality, UIDs, de-identification flag. Never names/IDs."""
    meta: dict[str, Any] = {"modality": str(ds.get("Modality") or "OT")}
    for keyword in UID_KEYWORDS:
        meta[keyword] = str(ds.get(keyword) or "")
    meta["PatientIdentityRemoved"] = str(ds.get("PatientIdentityRemoved") or "")
    meta["space"] = "RAS"
    return meta


def _rescale_source(ds: Dataset) -> Dataset:
    """The dataset holding Rescale Slope/Intercept (enhanced files keep them in a group)."""
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return ds
    slope, intercept = find_attr(ds, "RescaleSlope"), find_attr(ds, "RescaleIntercept")
    source = Dataset()
    if slope is not None and intercept is not None:
        source.RescaleSlope, source.RescaleIntercept = slope, intercept
    return source


def _no_pixels_problem(ds: Dataset) -> str:
    sop_class = UID(str(ds.get("SOPClassUID") or ""))
    # A known class by its name; anything else could be bytes of a damaged header (even
    # patient data), so it is not quoted.
    name = sop_class.name if sop_class.name != str(sop_class) else "unknown SOP class"
    # An image object without its pixel data is almost always a file cut short in transfer.
    if "Image" in name or "Rows" in ds:
        return f"truncated DICOM: {name} file ends before its pixel data"
    return f"DICOM file has no pixel data ({name} is not an image)"


def _decode_problem(ds: Dataset, exc: Exception) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    syntax = UID(str(syntax)) if syntax is not None else None
    if syntax is not None and not syntax.is_transfer_syntax:
        return f"unknown transfer syntax UID {one_line(str(syntax), 80)!r}: the pixel data cannot be decoded"
    if syntax is None or not syntax.is_compressed:
        expected = _expected_native_bytes(ds)
        actual = len(ds.get("PixelData") or b"")
        if expected and actual < expected:
            return f"truncated DICOM: pixel data has {actual} of {expected} bytes"
        return f"invalid pixel data: {one_line(exc)}"
    return (
        f"cannot decode {syntax.name} pixel data ({one_line(exc, 160)}); "
        "a decoder plugin such as pylibjpeg or python-gdcm may be needed"
    )


def _expected_native_bytes(ds: Dataset) -> int:
    try:
        n_values = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1)
        n_values *= int(ds.get("SamplesPerPixel") or 1)
        return (n_values * int(ds.BitsAllocated) + 7) // 8
    except (AttributeError, TypeError, ValueError):
        return 0
