"""The DICOM mutations of the fuzz corpus (fuzz_mutations.py holds the rest): each takes a
seeded Random and returns ``(detail, bytes)`` of one damaged file."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pydicom
from pydicom.uid import UID

from fuzz_seeds import dicom_seed, dicom_seeds, meta_end, write_dicom

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
    name, ds = dicom_seed(rng)
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
    data = write_dicom(ds)
    for placeholder, value in texts.items():
        data = data.replace(placeholder.encode(), value.encode()[:10].ljust(10))
    return f"{name} {' '.join(changes)}", data


def dicom_transfer_syntax(rng: random.Random) -> tuple[str, bytes]:
    """A compressed (or unknown, or wrong-endian) transfer syntax over data not encoded that way."""
    name, ds = dicom_seed(rng, native_only=rng.random() < 0.7)
    syntax = rng.choice(TRANSFER_SYNTAXES)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(buffer, ds.file_meta, enforce_standard=False)
    original = dicom_seeds()[name]
    # The data set's bytes stay as encoded: only the header's promise changes.
    start = meta_end(original)
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
    _, ds = dicom_seed(rng, native_only=True)
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
        return "FloatPixelData with non-finite value", write_dicom(ds)
    ds.RescaleSlope = rng.choice(("nan", "inf", "1e308"))
    return f"RescaleSlope {ds.RescaleSlope}", write_dicom(ds)


def dicom_headerless(rng: random.Random) -> tuple[str, bytes]:
    """The data set without preamble and meta (old scanners), intact or damaged."""
    name, _ = dicom_seed(rng, native_only=True)
    original = dicom_seeds()[name]
    data = bytearray(original[meta_end(original):])
    if rng.random() < 0.5:
        for _ in range(rng.choice((1, 4))):
            data[rng.randrange(min(len(data), 512))] = rng.randrange(256)
    return "no preamble", bytes(data)
