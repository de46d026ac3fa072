"""A folder of single-slice DICOM files assembled into one 3D volume.

The folder (and its sub-folders) must hold exactly one series. Slices are ordered by their
position along the slice normal (the cross product of the ImageOrientationPatient direction
cosines), which unlike InstanceNumber or file names is reliable for any orientation. The result
is ``(1, slice, row, col)`` with spacing ``(slice, row, col)`` in mm; the affine follows the
same RAS convention as :mod:`medsight.io.dicom`. Files without DICOM content (notes, thumbnails)
and DICOM objects without pixel data (DICOMDIR, structured reports) are ignored.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from monai.data import MetaTensor
from pydicom.dataset import Dataset

from medsight.errors import InputFileError
from medsight.io.dicom import (
    GEOMETRY,
    PIXEL_KEYWORDS,
    corrupt_elements,
    dicom_meta,
    header_values,
    image_orientation,
    image_position,
    invert_monochrome1,
    load_dataset,
    modality_pixels,
    pixel_spacing,
    ras_affine,
)
from medsight.io.limits import check_image_size
from medsight.io.validate import checked_image

logger = logging.getLogger(__name__)

# A gap this many times the typical slice spacing means missing slices, not jitter.
GAP_TOLERANCE = 1.5
# Positions closer than this fraction of the spacing are the same slice.
DUPLICATE_TOLERANCE = 0.01


def read_dicom_series(folder: str | Path) -> MetaTensor:
    """Read the single DICOM series in ``folder`` as a ``(1, S, R, C)`` image."""
    folder = Path(folder)
    with corrupt_elements(folder):
        return _volume(_series_slices(folder), folder)


def _volume(slices: list[Dataset], folder: Path) -> MetaTensor:
    with header_values(folder, GEOMETRY):  # e.g. a PixelSpacing that is not numbers
        _check_uniform(slices, folder)
        rows, cols = int(slices[0].get("Rows") or 0), int(slices[0].get("Columns") or 0)
        check_image_size(folder, (len(slices), rows, cols), what="series")

        row_sp, col_sp = pixel_spacing(slices[0])
        orientation = image_orientation(slices[0])
        affine = None
        if orientation is not None and all("ImagePositionPatient" in ds for ds in slices):
            row_dir, col_dir = orientation
            normal = np.cross(row_dir, col_dir)
            positions = np.array([image_position(ds) @ normal for ds in slices])
            order = np.argsort(positions, kind="stable")
            slices = [slices[i] for i in order]
            slice_sp = _slice_spacing(positions[order], folder) if len(slices) > 1 else None
            slice_sp = slice_sp or _nominal_spacing(slices[0])
            axes = [normal * slice_sp, col_dir * row_sp, row_dir * col_sp]
            affine = ras_affine(axes, image_position(slices[0]))
        else:
            # Without geometry, acquisition order is the best available; gaps cannot be checked.
            logger.warning("%s: no slice positions; ordering slices by InstanceNumber", folder)
            slices.sort(key=lambda ds: int(ds.get("InstanceNumber") or 0))
            slice_sp = _nominal_spacing(slices[0])

    volume = np.stack([modality_pixels(ds, ds.filename) for ds in slices])
    # Invert over the whole volume so every slice shares one intensity mapping.
    volume = invert_monochrome1(volume, slices[0])
    meta = dicom_meta(slices[0])
    meta["SOPInstanceUID"] = [str(ds.get("SOPInstanceUID") or "") for ds in slices]
    flags = {str(ds.get("PatientIdentityRemoved") or "") for ds in slices}
    # One identified slice makes the whole series identified.
    meta["PatientIdentityRemoved"] = "YES" if flags == {"YES"} else sorted(flags - {"YES"})[0]
    return checked_image(
        volume[None],
        folder,
        format="dicom-series",
        spacing=(slice_sp, row_sp, col_sp),
        affine=affine,
        **meta,
    )


def _series_slices(folder: Path) -> list[Dataset]:
    """Headers (pixel data deferred) of every image file of the folder's one series."""
    if not folder.is_dir():
        raise InputFileError(folder, "not a folder")
    by_series: dict[str, list[Dataset]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(".") or not _has_dicom_marker(path):
            continue
        # Deferred reading keeps only headers in memory until the series is known to be valid.
        ds = load_dataset(path, defer_size="1 KB")
        if any(k in ds for k in PIXEL_KEYWORDS):
            by_series.setdefault(str(ds.get("SeriesInstanceUID") or ""), []).append(ds)
    if not by_series:
        raise InputFileError(folder, "no DICOM image files found in the folder")
    if len(by_series) > 1:
        counts = " + ".join(str(len(v)) for v in sorted(by_series.values(), key=len, reverse=True))
        raise InputFileError(
            folder,
            f"mixed series: {len(by_series)} SeriesInstanceUIDs ({counts} files); "
            "pass the folder of a single series",
        )
    return next(iter(by_series.values()))


def _has_dicom_marker(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(132)[128:] == b"DICM"


def _check_uniform(slices: list[Dataset], folder: Path) -> None:
    """All slices must share size, pixel spacing, orientation and be single-frame greyscale."""
    sizes = Counter((int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)) for ds in slices)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({n} files)" for (r, c), n in sizes.most_common())
        raise InputFileError(folder, f"incomplete series: inconsistent slice sizes {listed}")
    for ds in slices:
        if int(ds.get("NumberOfFrames") or 1) > 1 or int(ds.get("SamplesPerPixel") or 1) > 1:
            raise InputFileError(
                ds.filename, "multi-frame or colour file inside a series folder; read it on its own"
            )
    if len({pixel_spacing(ds) for ds in slices}) > 1:
        raise InputFileError(folder, "incomplete series: slices have different PixelSpacing")
    orientations = [image_orientation(ds) for ds in slices]
    if orientations[0] is not None and any(
        o is None or not np.allclose(np.concatenate(o), np.concatenate(orientations[0]), atol=1e-3)
        for o in orientations
    ):
        raise InputFileError(folder, "incomplete series: slices have different orientations")


def _nominal_spacing(ds: Dataset) -> float:
    """The header's slice spacing, for series whose positions cannot give one."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        if value is not None and float(value) > 0:
            return float(value)
    return 1.0


def _slice_spacing(positions: np.ndarray, folder: Path) -> float:
    """Median distance between sorted slice positions, rejecting duplicates and gaps."""
    steps = np.diff(positions)
    spacing = float(np.median(steps))
    duplicates = steps <= DUPLICATE_TOLERANCE * max(spacing, 1e-6)
    if duplicates.any():
        i = int(np.argmax(duplicates))
        raise InputFileError(
            folder,
            f"incomplete series: duplicate slice position z={positions[i]:.2f} mm "
            "(two acquisitions or copied files in one folder?)",
        )
    gaps = steps > GAP_TOLERANCE * spacing
    if gaps.any():
        i = int(np.argmax(gaps))
        raise InputFileError(
            folder,
            f"incomplete series: missing slice(s) between z={positions[i]:.2f} and "
            f"z={positions[i + 1]:.2f} mm (spacing {spacing:.2f} mm)",
        )
    return spacing
