"""DICOM builders for the io tests: modified copies of pydicom's bundled CT_small.dcm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")


def set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Replace the pixel data of an uncompressed 16-bit dataset."""
    dtype = np.int16 if ds.PixelRepresentation else np.uint16
    ds.PixelData = pixels.astype(dtype).tobytes()


def write_ct_series(
    folder: Path,
    offsets: list[float],
    *,
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.8, -0.6),
    origin: tuple[float, float, float] = (10.0, -20.0, 30.0),
    series_uid: str | None = None,
    rng_seed: int = 0,
) -> np.ndarray:
    """Write one CT_small copy per offset along the slice normal, in shuffled file order.

    Each slice's stored pixel (0, 0) holds a marker: 100 * (its rank along the normal).
    Returns the slice normal.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row_dir, col_dir)
    series_uid = series_uid or generate_uid()
    rng = np.random.default_rng(rng_seed)
    ranks = np.argsort(np.argsort(offsets))
    for file_index, i in enumerate(rng.permutation(len(offsets))):
        ds = pydicom.dcmread(CT_SMALL)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [float(v) for v in np.array(origin) + offsets[i] * normal]
        ds.InstanceNumber = int(rng.integers(1, 1000))  # deliberately meaningless
        pixels = ds.pixel_array.copy()
        pixels[0, 0] = 100 * int(ranks[i])
        set_pixels(ds, pixels)
        ds.save_as(folder / f"img{file_index:03d}.dcm")
    return normal
