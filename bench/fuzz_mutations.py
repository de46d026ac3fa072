"""The file mutations of the fuzz corpus: each takes a seeded Random and returns
``(detail, bytes)`` of one damaged file."""

from __future__ import annotations

import functools
import gzip
import io
import random
import struct
import zipfile
import zlib
from typing import Callable

import numpy as np

from fuzz_mutations_dicom import (
    dicom_absurd_attributes,
    dicom_codestream,
    dicom_element_bytes,
    dicom_headerless,
    dicom_nan_pixels,
    dicom_nested,
    dicom_transfer_syntax,
)
from fuzz_seeds import (
    any_seed,
    nifti_bytes,
    npy_bytes,
    npz_bytes,
    other_seeds,
    section_boundaries,
)

MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM", b"PK\x03\x04",
          b"\x93NUMPY", b"\x1f\x8b", struct.pack("<i", 348), struct.pack(">i", 540), b"\x00" * 128 + b"DICM")


# -- families ---------------------------------------------------------------------------------
# Each builder gets a seeded Random and returns (detail, bytes) for a file, or writes a folder
# or special file itself when handed the path (see FOLDER_FAMILIES / SPECIAL_FAMILIES).


def truncate(rng: random.Random) -> tuple[str, bytes]:
    name, data = any_seed(rng)
    cut = rng.choice(section_boundaries(data)) + rng.choice((0, 0, 1, -1, 2))
    cut = min(max(cut, 0), len(data) - 1)
    return f"{name} cut at {cut}/{len(data)}", data[:cut]


def flip_header(rng: random.Random) -> tuple[str, bytes]:
    name, data = any_seed(rng)
    buf = bytearray(data)
    span = min(len(buf), rng.choice((64, 400, 1024, 2048)))
    positions = [rng.randrange(span) for _ in range(rng.choice((1, 1, 2, 4, 16)))]
    for pos in positions:
        buf[pos] ^= rng.choice((0x01, 0x80, 0xFF, rng.randrange(1, 256)))
    return f"{name} flipped {positions[:4]}", bytes(buf)


def flip_anywhere(rng: random.Random) -> tuple[str, bytes]:
    name, data = any_seed(rng)
    buf = bytearray(data)
    for _ in range(rng.choice((1, 8, 64))):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return f"{name} random bytes overwritten", bytes(buf)


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
        return f"npz {bad}", npz_bytes(image=arr[..., 0] if shape[2] == 1 else arr)
    return f"nifti {dtype.__name__} {bad}", nifti_bytes(arr, gz=rng.random() < 0.5)


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
        raw = npy_bytes(array).replace(b"(32, 32)", str(claim).encode().ljust(8))
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
        return f"dtype {array.dtype}", npz_bytes(image=array)
    if kind == "ndim":
        shape = rng.choice(((), (7,), (2, 3, 4, 5), (1, 1, 1, 1, 1), (0, 0), (1, 100000)))
        return f"shape {shape}", npz_bytes(image=np.zeros(shape, dtype=np.float32))
    if kind == "spacing":
        spacing = rng.choice((np.array([np.nan, 1.0]), np.array([-1.0, 1.0]), np.array([1.0]), np.array([[1.0]]),
                              np.array(["a", "b"])))
        return f"spacing {spacing.tolist()}", npz_bytes(image=np.zeros((8, 8), np.float32), spacing=spacing)
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
