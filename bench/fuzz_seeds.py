"""Seed files for the fuzz corpus: pydicom's bundled DICOM and NIfTI / raster / NumPy files
written here by nibabel, Pillow and NumPy, plus where each kind of file's sections begin."""

from __future__ import annotations

import functools
import gzip
import io
import random
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset

DICOM_DIR = Path(pydicom.data.__file__).parent / "test_files"
DICOM_SEEDS = (
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm", "SC_rgb_small_odd.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_rle_2frame.dcm",
    "rtdose.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "JPGExtended.dcm",
    "liver_1frame.dcm", "no_meta.dcm", "rtstruct.dcm", "JPEG-lossy.dcm",  # 12-bit JPEG: no decoder here
)


@functools.lru_cache(maxsize=None)
def dicom_seeds() -> dict[str, bytes]:
    return {n: (DICOM_DIR / n).read_bytes() for n in DICOM_SEEDS if (DICOM_DIR / n).is_file()}


def nifti_bytes(data: np.ndarray, gz: bool = False, two: bool = False, slope: float | None = None) -> bytes:
    image = (nib.Nifti2Image if two else nib.Nifti1Image)(data, np.diag([0.8, 0.8, 2.5, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, -1024.0)
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def raster_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def other_seeds() -> dict[str, bytes]:
    """NIfTI, raster and NumPy seeds, written by the libraries users' files come from."""
    rng = np.random.default_rng(0)
    vol = (rng.normal(0, 300, (24, 20, 12)) - 200).astype(np.float32)
    grey = Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8))
    rgb = Image.fromarray(rng.integers(0, 255, (32, 36, 3), dtype=np.uint8))
    grey16 = Image.fromarray(rng.integers(0, 65535, (30, 34), dtype=np.uint16))
    buffer = io.BytesIO()
    grey.save(buffer, format="TIFF", save_all=True, append_images=[grey, grey])
    seeds = {
        "vol.nii": nifti_bytes(vol),
        "vol.nii.gz": nifti_bytes(vol, gz=True),
        "vol2.nii": nifti_bytes(vol, two=True),
        "ct_int16.nii.gz": nifti_bytes((vol + 1024).astype(np.int16), gz=True, slope=1.0),
        "slice.nii": nifti_bytes(vol[:, :, :1]),
        "two_channel.nii": nifti_bytes(np.stack([vol, vol], axis=-1)),
        "grey.png": raster_bytes(grey, "PNG"),
        "rgb.png": raster_bytes(rgb, "PNG"),
        "grey16.png": raster_bytes(grey16, "PNG"),
        "palette.png": raster_bytes(rgb.convert("P"), "PNG"),
        "photo.jpg": raster_bytes(rgb, "JPEG", quality=90),
        "pages.tif": buffer.getvalue(),
        "grey.bmp": raster_bytes(grey, "BMP"),
        "image.npz": npz_bytes(image=vol[:, :, 0], spacing=np.array([0.7, 0.7])),
        "volume.npz": npz_bytes(compressed=True, image=vol),
        "image.npy": npy_bytes(vol[:, :, 0]),
    }
    return seeds


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def any_seed(rng: random.Random) -> tuple[str, bytes]:
    seeds = {**dicom_seeds(), **other_seeds()}
    name = rng.choice(sorted(seeds))
    return name, seeds[name]


def dicom_seed(rng: random.Random, native_only: bool = False) -> tuple[str, Dataset]:
    names = sorted(dicom_seeds())
    if native_only:
        names = [n for n in names if n in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm",
                                           "SC_rgb_small_odd.dcm", "liver_1frame.dcm")]
    name = rng.choice(names)
    return name, pydicom.dcmread(io.BytesIO(dicom_seeds()[name]), force=True)


def meta_end(data: bytes) -> int:
    """Where the data set starts, after the preamble and file meta (0 without them)."""
    if data[128:132] != b"DICM":
        return 0
    meta = pydicom.dcmread(io.BytesIO(data), force=True).file_meta
    return 132 + 12 + int(meta.get("FileMetaInformationGroupLength", 0))


def write_dicom(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


# -- where a file's sections begin ------------------------------------------------------------


def section_boundaries(data: bytes) -> list[int]:
    """Offsets where a reader moves from one part of the file to the next."""
    cuts = {0, 1, 4, len(data) // 2, max(len(data) - 1, 0)}
    if data[128:132] == b"DICM" or data[:2] in (b"\x08\x00", b"\x02\x00"):
        cuts |= {128, 132}
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True, defer_size=None)
            for container in (ds.file_meta, ds):
                for tag in container.keys():
                    raw = container.get_item(tag)
                    tell = getattr(raw, "value_tell", None)
                    if tell:
                        cuts |= {tell - 12, tell - 8, tell - 4, tell, tell + (getattr(raw, "length", 0) or 0) // 2}
        except Exception:  # noqa: BLE001 - a seed pydicom cannot parse still has its header cuts
            pass
    elif data.startswith(b"\x89PNG"):
        pos = 8
        while pos + 8 <= len(data):
            (length,) = struct.unpack(">I", data[pos:pos + 4])
            cuts |= {pos, pos + 4, pos + 8, pos + 8 + length // 2, pos + 8 + length}
            pos += 12 + length
    elif data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                cuts |= {info.header_offset, info.header_offset + 30, info.header_offset + 30 + len(info.filename) + 64}
    elif len(data) > 352 and struct.unpack("<i", data[:4])[0] in (348, 540):
        offset = int(struct.unpack("<f", data[108:112])[0]) if data[:4] == struct.pack("<i", 348) else 544
        cuts |= {40, 56, 70, 76, 108, 112, 344, 348, 352, offset, offset + 1}
    return sorted(c for c in cuts if 0 <= c < len(data))
