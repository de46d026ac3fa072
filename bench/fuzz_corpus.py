"""The fuzz corpus for ``bench/fuzz.py``: structured mutations of real files, one case per index.

``build_case(seed, index, folder)`` writes case ``index`` of the corpus ``seed`` under
``folder`` and returns it; the same (seed, index) always gives the same bytes, so any case can
be rebuilt from the table's examples (``python bench/fuzz.py --show SEED:INDEX``). Seeds are
real files: pydicom's bundled DICOM (CT, MR, RLE, JPEG, JPEG 2000, JPEG-LS, deflated, RT dose,
big endian, no meta) and NIfTI / PNG / JPEG / TIFF / npz written here by nibabel, Pillow and
NumPy. The families mutate them where readers are fragile: truncation at every section
boundary, flipped header bytes, wrong VRs and lengths, absurd image attributes, compressed
transfer syntaxes over native data, lying NIfTI / PNG / npy headers and decompression bombs,
NaN / Inf volumes, empty files, folders of non-images and series gone wrong, symlink loops,
pipes and devices.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

DICOM_DIR = Path(pydicom.data.__file__).parent / "test_files"
DICOM_SEEDS = (
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm", "SC_rgb_small_odd.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_rle_2frame.dcm",
    "rtdose.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "JPGExtended.dcm",
    "liver_1frame.dcm", "no_meta.dcm", "rtstruct.dcm", "JPEG-lossy.dcm",  # 12-bit JPEG: no decoder here
)
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2",
    "1.2.3.4.5.6.7", "", "not a uid", "1.2.840.10008.5.1.4.1.1.2",
)
ABSURD_INTS = (0, 1, 2, 3, 7, 255, 4096, 32767, 65535, 65536, 2**31 - 1, -1, -65535)
ABSURD_FLOATS = ("nan", "inf", "-inf", "0", "-1", "1e308", "1e-308", "abc", "", "1\\2\\3")
VRS = ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF",
       "OL", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR",
       "US", "UT", "UV", "\x00\x00", "zz", "\xff\xfe")
MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM", b"PK\x03\x04",
          b"\x93NUMPY", b"\x1f\x8b", struct.pack("<i", 348), struct.pack(">i", 540), b"\x00" * 128 + b"DICM")


@dataclass(frozen=True)
class Case:
    """One fuzz case: where it was written and how it was made (family, then details)."""

    index: int
    family: str
    detail: str
    path: Path


# -- seed files ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def dicom_seeds() -> dict[str, bytes]:
    return {n: (DICOM_DIR / n).read_bytes() for n in DICOM_SEEDS if (DICOM_DIR / n).is_file()}


def _nifti_bytes(data: np.ndarray, gz: bool = False, two: bool = False, slope: float | None = None) -> bytes:
    image = (nib.Nifti2Image if two else nib.Nifti1Image)(data, np.diag([0.8, 0.8, 2.5, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, -1024.0)
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def _raster_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
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
        "vol.nii": _nifti_bytes(vol),
        "vol.nii.gz": _nifti_bytes(vol, gz=True),
        "vol2.nii": _nifti_bytes(vol, two=True),
        "ct_int16.nii.gz": _nifti_bytes((vol + 1024).astype(np.int16), gz=True, slope=1.0),
        "slice.nii": _nifti_bytes(vol[:, :, :1]),
        "two_channel.nii": _nifti_bytes(np.stack([vol, vol], axis=-1)),
        "grey.png": _raster_bytes(grey, "PNG"),
        "rgb.png": _raster_bytes(rgb, "PNG"),
        "grey16.png": _raster_bytes(grey16, "PNG"),
        "palette.png": _raster_bytes(rgb.convert("P"), "PNG"),
        "photo.jpg": _raster_bytes(rgb, "JPEG", quality=90),
        "pages.tif": buffer.getvalue(),
        "grey.bmp": _raster_bytes(grey, "BMP"),
        "image.npz": _npz_bytes(image=vol[:, :, 0], spacing=np.array([0.7, 0.7])),
        "volume.npz": _npz_bytes(compressed=True, image=vol),
        "image.npy": _npy_bytes(vol[:, :, 0]),
    }
    return seeds


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _any_seed(rng: random.Random) -> tuple[str, bytes]:
    seeds = {**dicom_seeds(), **other_seeds()}
    name = rng.choice(sorted(seeds))
    return name, seeds[name]


def _dicom_seed(rng: random.Random, native_only: bool = False) -> tuple[str, Dataset]:
    names = sorted(dicom_seeds())
    if native_only:
        names = [n for n in names if n in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm",
                                           "SC_rgb_small_odd.dcm", "liver_1frame.dcm")]
    name = rng.choice(names)
    return name, pydicom.dcmread(io.BytesIO(dicom_seeds()[name]), force=True)


def _meta_end(data: bytes) -> int:
    """Where the data set starts, after the preamble and file meta (0 without them)."""
    if data[128:132] != b"DICM":
        return 0
    meta = pydicom.dcmread(io.BytesIO(data), force=True).file_meta
    return 132 + 12 + int(meta.get("FileMetaInformationGroupLength", 0))


def _write_dicom(ds: Dataset) -> bytes:
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


# -- families ---------------------------------------------------------------------------------
# Each builder gets a seeded Random and returns (detail, bytes) for a file, or writes a folder
# or special file itself when handed the path (see FOLDER_FAMILIES / SPECIAL_FAMILIES).


def truncate(rng: random.Random) -> tuple[str, bytes]:
    name, data = _any_seed(rng)
    cut = rng.choice(section_boundaries(data)) + rng.choice((0, 0, 1, -1, 2))
    cut = min(max(cut, 0), len(data) - 1)
    return f"{name} cut at {cut}/{len(data)}", data[:cut]


def flip_header(rng: random.Random) -> tuple[str, bytes]:
    name, data = _any_seed(rng)
    buf = bytearray(data)
    span = min(len(buf), rng.choice((64, 400, 1024, 2048)))
    positions = [rng.randrange(span) for _ in range(rng.choice((1, 1, 2, 4, 16)))]
    for pos in positions:
        buf[pos] ^= rng.choice((0x01, 0x80, 0xFF, rng.randrange(1, 256)))
    return f"{name} flipped {positions[:4]}", bytes(buf)


def flip_anywhere(rng: random.Random) -> tuple[str, bytes]:
    name, data = _any_seed(rng)
    buf = bytearray(data)
    for _ in range(rng.choice((1, 8, 64))):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return f"{name} random bytes overwritten", bytes(buf)


def dicom_element_bytes(rng: random.Random) -> tuple[str, bytes]:
    """A wrong VR or a wrong length in one element's header, in the raw bytes."""
    name = rng.choice([n for n in sorted(dicom_seeds()) if n not in ("MR_small_implicit.dcm", "no_meta.dcm")])
    data = bytearray(dicom_seeds()[name])
    ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
    elements = [(c, t) for c in (ds.file_meta, ds) for t in c.keys() if getattr(c.get_item(t), "value_tell", None)]
    container, tag = rng.choice(elements)
    raw = container.get_item(tag)
    tell = raw.value_tell
    long_vr = raw.VR in ("OB", "OD", "OF", "OL", "OW", "SQ", "UC", "UN", "UR", "UT", "OV", "SV", "UV")
    order = ">" if name.endswith("bigendian.dcm") and container is ds else "<"
    if rng.random() < 0.5:
        head = tell - (12 if long_vr else 8)
        vr = rng.choice(VRS)
        data[head + 4:head + 6] = vr.encode("latin-1")
        return f"{name} {tag} VR -> {vr!r}", bytes(data)
    value = rng.choice((0, 1, 3, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFF0, len(data), (raw.length or 0) + 1, (raw.length or 0) * 2))
    if long_vr:
        data[tell - 4:tell] = struct.pack(order + "I", value & 0xFFFFFFFF)
    else:
        data[tell - 2:tell] = struct.pack(order + "H", value & 0xFFFF)
    return f"{name} {tag} length -> {value}", bytes(data)


def dicom_absurd_attributes(rng: random.Random) -> tuple[str, bytes]:
    """Rows, Columns, NumberOfFrames, BitsAllocated... set to values no scanner writes."""
    name, ds = _dicom_seed(rng)
    changes: list[str] = []
    texts: dict[str, str] = {}
    for _ in range(rng.choice((1, 1, 2, 3))):
        keyword = rng.choice(("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit",
                              "SamplesPerPixel", "PixelRepresentation", "PlanarConfiguration", "RescaleSlope",
                              "RescaleIntercept", "PixelSpacing", "ImageOrientationPatient", "SliceThickness",
                              "PhotometricInterpretation", "WindowWidth", "DoseGridScaling", "LargestImagePixelValue"))
        if keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
                       "PixelRepresentation", "PlanarConfiguration"):
            value = rng.choice([v for v in ABSURD_INTS if 0 <= v <= 65535])
            ds.add_new(keyword, "US", value)
        elif keyword == "NumberOfFrames":
            value = str(rng.choice(ABSURD_INTS + (10**9, 10**12)))
            ds.add_new(keyword, "IS", value[:12])
        elif keyword == "PhotometricInterpretation":
            value = rng.choice(("MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL_422", "YBR_ICT", "CMYK", "", "??"))
            ds.add_new(keyword, "CS", value)
        elif keyword == "LargestImagePixelValue":
            value = rng.choice((0, 65535))
            ds.add_new(keyword, "US", value)
        else:
            value = rng.choice(ABSURD_FLOATS)
            if keyword == "ImageOrientationPatient":
                value = rng.choice(("0\\0\\0\\0\\0\\0", "nan\\0\\0\\0\\1\\0", "1\\0\\0\\1\\0\\0", "1\\0"))
            # pydicom will not hold "abc" as a DS: write a placeholder, then swap the bytes.
            placeholder = f"{9000000 + len(changes)}.5"
            ds.add_new(keyword, "DS", placeholder)
            texts[placeholder] = value
        changes.append(f"{keyword}={value}")
    data = _write_dicom(ds)
    for placeholder, value in texts.items():
        data = data.replace(placeholder.encode(), value.encode()[:10].ljust(10))
    return f"{name} {' '.join(changes)}", data


def dicom_transfer_syntax(rng: random.Random) -> tuple[str, bytes]:
    """A compressed (or unknown, or wrong-endian) transfer syntax over data not encoded that way."""
    name, ds = _dicom_seed(rng, native_only=rng.random() < 0.7)
    syntax = rng.choice(TRANSFER_SYNTAXES)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(buffer, ds.file_meta, enforce_standard=False)
    original = dicom_seeds()[name]
    # The data set's bytes stay as encoded: only the header's promise changes.
    start = _meta_end(original)
    return f"{name} TransferSyntaxUID -> {syntax!r}", original[:128] + b"DICM" + buffer.getvalue() + original[start:]


def dicom_codestream(rng: random.Random) -> tuple[str, bytes]:
    """Bytes changed inside compressed pixel data (RLE, JPEG, JPEG 2000, JPEG-LS): codestream
    headers with other sizes, segment tables pointing nowhere."""
    name = rng.choice([n for n in ("MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                   "MR_small_jp2klossless.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_rle_2frame.dcm",
                                   "JPGExtended.dcm", "JPEG-lossy.dcm") if n in dicom_seeds()])
    data = bytearray(dicom_seeds()[name])
    ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
    start = ds.get_item("PixelData").value_tell
    window = rng.choice((64, 256, len(data) - start))
    for _ in range(rng.choice((1, 2, 4, 12))):
        pos = start + rng.randrange(max(1, min(window, len(data) - start)))
        data[pos] = rng.choice((0x00, 0xFF, 0x7F, rng.randrange(256)))
    return f"{name} pixel-data bytes changed", bytes(data)


def dicom_nested(rng: random.Random) -> tuple[str, bytes]:
    """Sequences nested hundreds deep (undefined lengths), closed or never closed."""
    depth = rng.choice((50, 400, 3000))
    data = dicom_seeds()["CT_small.dcm"]
    at = data.rfind(b"\xe0\x7f\x10\x00")  # the pixel data element: nest just before it
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    closed = rng.random() < 0.5
    nested = opening * depth + b"\x08\x00\x00\x01SH\x02\x001 " + (closing * depth if closed else b"")
    return f"depth {depth}{'' if closed else ', never closed'}", data[:at] + nested + data[at:]


def dicom_nan_pixels(rng: random.Random) -> tuple[str, bytes]:
    """Float pixel data with NaN / Inf, or a NaN rescale slope."""
    _, ds = _dicom_seed(rng, native_only=True)
    if rng.random() < 0.5 or "PixelData" not in ds:
        arr = np.random.default_rng(rng.randrange(2**32)).normal(size=(int(ds.Rows), int(ds.Columns))).astype(np.float32)
        arr.flat[rng.randrange(arr.size)] = rng.choice((np.nan, np.inf, -np.inf))
        del ds.PixelData
        for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.BitsAllocated, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 1, "MONOCHROME2"
        ds.FloatPixelData = arr.tobytes()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        return "FloatPixelData with non-finite value", _write_dicom(ds)
    ds.RescaleSlope = rng.choice(("nan", "inf", "1e308"))
    return f"RescaleSlope {ds.RescaleSlope}", _write_dicom(ds)


def dicom_headerless(rng: random.Random) -> tuple[str, bytes]:
    """The data set without preamble and meta (old scanners), intact or damaged."""
    name, _ = _dicom_seed(rng, native_only=True)
    original = dicom_seeds()[name]
    data = bytearray(original[_meta_end(original):])
    if rng.random() < 0.5:
        for _ in range(rng.choice((1, 4))):
            data[rng.randrange(min(len(data), 512))] = rng.randrange(256)
    return "no preamble", bytes(data)


def nifti_header(rng: random.Random) -> tuple[str, bytes]:
    """NIfTI headers claiming 10¹² voxels, negative sizes, impossible types and offsets."""
    name = rng.choice(("vol.nii", "slice.nii", "two_channel.nii", "vol.nii.gz", "ct_int16.nii.gz", "vol2.nii"))
    data = other_seeds()[name]
    gz = name.endswith(".gz")
    raw = bytearray(gzip.decompress(data) if gz else data)
    two = name == "vol2.nii"
    field = rng.choice(("dims", "dims", "negative", "ndim", "datatype", "vox_offset", "pixdim", "scl", "sform"))
    if two:  # NIfTI-2: int64 dims at 16, datatype at 12, vox_offset int64 at 168
        if field in ("dims", "negative"):
            value = rng.choice((10**6, 10**12, -1, -(10**12)))
            struct.pack_into("<q", raw, 16 + 8 * rng.randrange(1, 4), value)
        else:
            struct.pack_into("<h", raw, 12, rng.choice((0, 3, 255, 2048, -1)))
            value = "datatype"
    elif field == "dims":
        value = [rng.choice((1, 2, 32767, 10000)) for _ in range(3)]
        struct.pack_into("<hhh", raw, 42, *value)  # 32767³ ≈ 3.5·10¹³ voxels
    elif field == "negative":
        value = rng.choice((-1, -32768, 0))
        struct.pack_into("<h", raw, 42 + 2 * rng.randrange(3), value)
    elif field == "ndim":
        value = rng.choice((0, 8, 9, -1, 32767))
        struct.pack_into("<h", raw, 40, value)
    elif field == "datatype":
        value = rng.choice((0, 3, 33, 1792, 2304, 255, -1))
        struct.pack_into("<h", raw, 70, value)
    elif field == "vox_offset":
        value = rng.choice((0.0, 100.0, 349.0, 1e12, -352.0, float("nan")))
        struct.pack_into("<f", raw, 108, value)
    elif field == "pixdim":
        value = rng.choice((0.0, -1.0, float("nan"), float("inf")))
        struct.pack_into("<f", raw, 80 + 4 * rng.randrange(3), value)
    elif field == "scl":
        value = rng.choice((float("nan"), float("inf"), 1e38, 0.0))
        struct.pack_into("<f", raw, 112, value)
    else:
        value = rng.choice((float("nan"), float("inf")))
        struct.pack_into("<hh", raw, 252, 1, 1)
        struct.pack_into("<f", raw, 280, value)
    out = bytes(raw)
    return f"{name} {field}={value}", gzip.compress(out, mtime=0) if gz else out


def nonfinite_volume(rng: random.Random) -> tuple[str, bytes]:
    """Volumes holding NaN or ±Inf, as NIfTI (float32/64, gz or not) and npz."""
    shape = rng.choice(((16, 16, 8), (20, 20, 1), (8, 8, 8)))
    dtype = rng.choice((np.float32, np.float64))
    arr = np.random.default_rng(rng.randrange(2**32)).normal(size=shape).astype(dtype)
    bad = rng.choice((np.nan, np.inf, -np.inf, "all-nan", "huge"))
    if bad == "all-nan":
        arr[:] = np.nan
    elif bad == "huge":
        arr[0, 0, 0] = 1e300 if dtype == np.float64 else 3e38
    else:
        arr.flat[rng.randrange(arr.size)] = bad
    if rng.random() < 0.3:
        return f"npz {bad}", _npz_bytes(image=arr[..., 0] if shape[2] == 1 else arr)
    return f"nifti {dtype.__name__} {bad}", _nifti_bytes(arr, gz=rng.random() < 0.5)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.lru_cache(maxsize=8)
def _zero_idat(width: int, height: int) -> bytes:
    """Deflated all-zero 8-bit greyscale scanlines, built row by row (little memory)."""
    packer, row, parts = zlib.compressobj(9), b"\x00" * (width + 1), []
    for _ in range(height):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    return b"".join(parts)


def png_bomb(rng: random.Random) -> tuple[str, bytes]:
    """PNG decompression bombs: huge IHDR sizes over small data, real all-zero giants, text bombs."""
    kind = rng.choice(("lying", "lying", "real", "text", "real-small"))
    if kind == "text":
        payload = b"Comment\x00\x00" + zlib.compress(b"A" * rng.choice((10**6, 5 * 10**7)), 9)
        grey = other_seeds()["grey.png"]
        return "zTXt bomb", grey[:33] + _png_chunk(b"zTXt", payload) + grey[33:]
    if kind == "lying":
        width, height = rng.choice(((2**31 - 1, 1), (100000, 100000), (65535, 65535), (30000, 20000), (1, 2**31 - 1)))
        idat = zlib.compress(b"\x00" * 64)
    else:
        width, height = (16000, 14000) if kind == "real" else (4000, 3000)
        idat = _zero_idat(width, height)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return f"{kind} {width}x{height}", data


def raster_header(rng: random.Random) -> tuple[str, bytes]:
    """JPEG SOF, TIFF and BMP headers claiming other sizes than their data holds."""
    name = rng.choice(("photo.jpg", "pages.tif", "grey.bmp"))
    data = bytearray(other_seeds()[name])
    size = rng.choice((0, 1, 65535, 40000))
    if name == "photo.jpg":
        sof = data.find(b"\xff\xc0")
        struct.pack_into(">HH", data, sof + 5, size, rng.choice((size, 1, 65535)))
    elif name == "grey.bmp":
        struct.pack_into("<ii", data, 18, rng.choice((size, -size, 2**31 - 1)), rng.choice((size, -size, -(2**31))))
    else:
        # First IFD entries: ImageWidth (256) and ImageLength (257) are SHORT or LONG values.
        pos = data.find(struct.pack("<HH", 256, 3)) if data.find(struct.pack("<HH", 256, 3)) > 0 else data.find(struct.pack("<HH", 256, 4))
        if pos > 0:
            struct.pack_into("<I", data, pos + 8, rng.choice((size, 2**31 - 1, 2**32 - 1)))
    return f"{name} size -> {size}", bytes(data)


def npz_lies(rng: random.Random) -> tuple[str, bytes]:
    """npz/npy: shape headers claiming more than stored, pickles, odd dtypes and shapes."""
    kind = rng.choice(("shape", "shape", "pickle", "dtype", "ndim", "spacing", "members", "zipsize", "npy-shape"))
    rng_np = np.random.default_rng(rng.randrange(2**32))
    if kind in ("shape", "npy-shape"):
        claim = rng.choice(((10**6, 10**6), (2**40,), (100000, 100000, 1000), (64, 64), (0, 5)))
        array = rng_np.random((32, 32)).astype(np.float32)
        raw = _npy_bytes(array).replace(b"(32, 32)", str(claim).encode().ljust(8))
        if kind == "npy-shape":
            return f"npy claims {claim}", raw
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("image.npy", raw)
        return f"npz claims {claim}", buffer.getvalue()
    if kind == "pickle":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        with zipfile.ZipFile(out := io.BytesIO(), "w") as archive:
            archive.writestr("image.npy", buffer.getvalue())
        return "pickled object array", out.getvalue()
    if kind == "dtype":
        array = rng.choice((np.array([["a", "b"], ["c", "d"]]), np.zeros((4, 4), dtype="V8"),
                            np.zeros((4, 4), dtype=[("x", "f4"), ("y", "i2")]), np.zeros((4, 4), dtype=complex),
                            np.zeros((4, 4), dtype="M8[s]")))
        return f"dtype {array.dtype}", _npz_bytes(image=array)
    if kind == "ndim":
        shape = rng.choice(((), (7,), (2, 3, 4, 5), (1, 1, 1, 1, 1), (0, 0), (1, 100000)))
        return f"shape {shape}", _npz_bytes(image=np.zeros(shape, dtype=np.float32))
    if kind == "spacing":
        spacing = rng.choice((np.array([np.nan, 1.0]), np.array([-1.0, 1.0]), np.array([1.0]), np.array([[1.0]]),
                              np.array(["a", "b"])))
        return f"spacing {spacing.tolist()}", _npz_bytes(image=np.zeros((8, 8), np.float32), spacing=spacing)
    if kind == "members":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for i in range(rng.choice((0, 1, 3))):
                archive.writestr(f"notes{i}.txt", "not an array")
        return "zip without arrays", buffer.getvalue()
    data = bytearray(other_seeds()["volume.npz"])
    # Patch the central directory's uncompressed size: a member claiming to inflate to 4 GB.
    pos = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, pos + 24, rng.choice((2**32 - 1, 10**9)))
    return "member size lies", bytes(data)


def empty_or_magic(rng: random.Random) -> tuple[str, bytes]:
    """Zero bytes, or only a format's magic number, or a magic number then nothing useful."""
    kind = rng.choice(("zero", "magic", "magic+noise", "magic+zeros"))
    if kind == "zero":
        return "0 bytes", b""
    magic = rng.choice(MAGICS)
    if kind == "magic":
        return f"magic {magic[:8]!r}", magic
    tail_len = rng.choice((1, 100, 600, 5000))
    tail = bytes(rng.randrange(256) for _ in range(tail_len)) if kind == "magic+noise" else b"\x00" * tail_len
    return f"{kind} {magic[:8]!r}", magic + tail


def garbage(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(("random", "text", "csv", "html", "json"))
    if kind == "random":
        n = rng.choice((1, 7, 128, 132, 544, 4096, 70000))
        return f"{n} random bytes", bytes(rng.randrange(256) for _ in range(n))
    text = {"text": "Clinical notes: patient stable.\n" * 20, "csv": "path,label\nA.dcm,1\n" * 30,
            "html": "<html><body>report</body></html>", "json": '{"not": "an image"}'}[kind]
    return kind, text.encode()


FILE_FAMILIES: dict[str, tuple[int, Callable[[random.Random], tuple[str, bytes]]]] = {
    "truncate": (14, truncate),
    "flip-header": (12, flip_header),
    "flip-anywhere": (5, flip_anywhere),
    "dicom-element": (10, dicom_element_bytes),
    "dicom-attributes": (10, dicom_absurd_attributes),
    "dicom-syntax": (6, dicom_transfer_syntax),
    "dicom-codestream": (5, dicom_codestream),
    "dicom-nested": (2, dicom_nested),
    "dicom-nan": (3, dicom_nan_pixels),
    "dicom-headerless": (3, dicom_headerless),
    "nifti-header": (8, nifti_header),
    "non-finite": (4, nonfinite_volume),
    "png-bomb": (2, png_bomb),
    "raster-header": (4, raster_header),
    "npz": (6, npz_lies),
    "empty": (3, empty_or_magic),
    "garbage": (3, garbage),
}


# -- folders and special files -----------------------------------------------------------------


def _series_slice(ds: Dataset, z: float, series: str, size: int | None = None) -> bytes:
    ds = ds.copy()
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series, str(z)])
    if size is not None:
        ds.Rows = size
    return _write_dicom(ds)


def folder_case(rng: random.Random, path: Path) -> str:
    """A folder: non-images only, a series gone wrong, or nothing at all."""
    path.mkdir()
    kind = rng.choice(("non-images", "non-images", "series-gap", "series-duplicate", "mixed-series",
                       "series-bad-slice", "series-sizes", "empty", "nested-junk", "symlink-loop"))
    if kind in ("non-images", "nested-junk"):
        folder = path / "a" / "b" if kind == "nested-junk" else path
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(rng.choice((1, 3, 12))):
            _, data = rng.choice((garbage, empty_or_magic))(rng)
            (folder / f"file{i}{rng.choice(('.dcm', '.png', '', '.txt', '.nii'))}").write_bytes(data)
        return kind
    if kind == "empty":
        return kind
    if kind == "symlink-loop":
        (path / "loop").symlink_to(path)
        (path / "self").symlink_to(path / "self")
        (path / "notes.txt").write_text("nothing here")
        return kind
    base = pydicom.dcmread(DICOM_DIR / "CT_small.dcm")
    series = generate_uid(entropy_srcs=[str(rng.random())])
    zs = [2.5 * i for i in range(rng.choice((3, 5, 8)))]
    if kind == "series-gap":
        del zs[len(zs) // 2]
    if kind == "series-duplicate":
        zs.append(zs[0])
    for i, z in enumerate(zs):
        (path / f"s{i:03d}.dcm").write_bytes(_series_slice(base, z, series))
    if kind == "mixed-series":
        (path / "other.dcm").write_bytes(_series_slice(base, 100.0, generate_uid(entropy_srcs=["other"])))
    if kind == "series-sizes":
        (path / "odd.dcm").write_bytes(_series_slice(base, 99.0, series, size=rng.choice((32, 65535))))
    if kind == "series-bad-slice":
        victim = path / "s000.dcm"
        _, data = rng.choice((truncate, flip_header, dicom_absurd_attributes))(rng)
        victim.write_bytes(data)
    return kind


def special_case(rng: random.Random, path: Path) -> str:
    """Symlink loops, dangling links, pipes and endless devices."""
    kind = rng.choice(("self-loop", "pair-loop", "dangling", "fifo", "dev-zero", "dev-urandom", "dir-named-dcm"))
    if kind == "self-loop":
        path.symlink_to(path)
    elif kind == "pair-loop":
        other = path.with_name(path.name + ".other")
        path.symlink_to(other)
        other.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(path.with_name("missing-target.dcm"))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-urandom":
        path.symlink_to("/dev/urandom")
    else:
        path.mkdir()
    return kind


# Weights out of the file families' total (~100): folders and specials are slower to run.
OTHER_FAMILIES = {"folder": (6, folder_case), "special": (3, special_case)}


def _draw_family(seed: int, index: int) -> tuple[random.Random, str]:
    rng = random.Random(f"medsight-fuzz:{seed}:{index}")
    weights = {**{k: w for k, (w, _) in FILE_FAMILIES.items()}, **{k: w for k, (w, _) in OTHER_FAMILIES.items()}}
    names = sorted(weights)
    return rng, rng.choices(names, weights=[weights[k] for k in names])[0]


def family_of(seed: int, index: int) -> str:
    """The family case ``index`` of corpus ``seed`` belongs to, without building it."""
    return _draw_family(seed, index)[1]


def build_case(seed: int, index: int, folder: Path) -> Case:
    """Write case ``index`` of corpus ``seed`` into ``folder`` (which must exist)."""
    rng, family = _draw_family(seed, index)
    suffix = rng.choice(("", ".dcm", ".nii", ".nii.gz", ".png", ".npz", ".jpg", ".tif", ".dat"))
    path = folder / f"case{index:06d}{suffix}"
    if family in OTHER_FAMILIES:
        detail = OTHER_FAMILIES[family][1](rng, path)
    else:
        for _ in range(5):  # a mutation pydicom refuses to write is drawn again
            try:
                detail, data = FILE_FAMILIES[family][1](rng)
                break
            except Exception:  # noqa: BLE001 - the generator's problem, not the reader's
                continue
        else:
            family, (detail, data) = "garbage", garbage(rng)
        path.write_bytes(data)
    return Case(index, family, detail, path)
