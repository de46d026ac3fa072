"""``read_image``: one entry point that picks the reader from a file's content.

Extensions lie (DICOM exports often have none, PNGs get renamed), so the first bytes decide:
magic numbers for DICOM, NIfTI, gzip, NumPy and raster formats, then, for DICOM files written
without the 128-byte preamble, a forced pydicom parse that must find pixel data. A folder is a
DICOM series.

Whatever a reader library raises on bad bytes ends here as an :class:`InputFileError` naming
the file: each reader maps the failures it knows, and ``read_image`` maps the rest, so a
malformed file is always one line for the user (the original exception stays attached as the
cause, for ``--debug``).
"""

from __future__ import annotations

import gzip
import logging
import stat
import struct
import zlib
from pathlib import Path

from monai.data import MetaTensor

from medsight.errors import InputFileError, MedsightError
from medsight.io.dicom import is_headerless_dicom, read_dicom
from medsight.io.dicom_series import read_dicom_series
from medsight.io.nifti import read_nifti
from medsight.io.npz import read_npz_image
from medsight.io.raster import read_raster
from medsight.io.validate import one_line

log = logging.getLogger(__name__)

RASTER_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"II*\x00",  # TIFF, little endian
    b"MM\x00*",  # TIFF, big endian
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"BM",  # BMP
)
NIFTI_HEADER_SIZES = (348, 540)  # sizeof_hdr of NIfTI-1 and NIfTI-2
SNIFF_BYTES = 544


def read_image(path: str | Path) -> MetaTensor:
    """Read any supported image file, or a DICOM series folder, as a medsight image.

    Raises :class:`InputFileError` (one line, naming the file) for anything unusable.
    """
    path = Path(path)
    try:
        return _read(path)
    except MedsightError:
        raise
    except MemoryError:
        raise InputFileError(path, "not enough memory to read this image") from None
    except Exception as exc:
        # A reader library failing on bad bytes in a way no reader anticipated. It is still
        # the file's problem for the user; the cause is kept for --debug and bug reports.
        log.debug("unexpected reader failure on %s", path, exc_info=True)
        problem = f"unreadable file (unexpected {type(exc).__name__}: {one_line(exc, 200)})"
        raise InputFileError(path, problem) from exc


def _read(path: Path) -> MetaTensor:
    if path.is_dir():
        return read_dicom_series(path)
    kind = sniff_format(path)
    if kind == "dicom":
        return read_dicom(path)
    if kind == "nifti":
        return read_nifti(path)
    if kind == "raster":
        return read_raster(path)
    if kind == "numpy":
        return read_npz_image(path)
    if is_headerless_dicom(path):
        return read_dicom(path, force=True)
    raise InputFileError(path, "not an image file (unrecognised content)")


def image_kind(path: str | Path) -> str | None:
    """What ``read_image`` would read ``path`` as (``"dicom"``, ``"nifti"``, ``"raster"``,
    ``"numpy"``), or None for content no reader supports. For callers that must tell an
    unsupported type from a damaged file (the service answers 415 for one, 400 for the other).
    """
    path = Path(path)
    kind = sniff_format(path)
    if kind is None and is_headerless_dicom(path):
        return "dicom"
    return kind


def sniff_format(path: Path) -> str | None:
    """``"dicom"``, ``"nifti"``, ``"raster"`` or ``"numpy"`` from the leading bytes, else None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(path, "no such file or folder") from None
    except OSError as exc:  # e.g. a symlink loop
        raise InputFileError(path, f"cannot open file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        # A pipe blocks forever and /dev/zero never ends: only regular files are read.
        raise InputFileError(path, "not a regular file (a device, pipe or socket)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise InputFileError(path, "no such file or folder") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot open file: {exc.strerror or exc}") from None
    if not head:
        raise InputFileError(path, "empty file (0 bytes)")
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(RASTER_MAGIC):
        return "raster"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # zip (.npz), .npy
        return "numpy"
    if head.startswith(b"\x1f\x8b"):
        if _is_nifti_header(_gunzip_head(path)):
            return "nifti"
        raise InputFileError(path, "gzip file that does not contain a NIfTI image")
    if _is_nifti_header(head):
        return "nifti"
    return None


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 4:
        return False
    # sizeof_hdr is the first int32 in either byte order; it doubles as the endianness check.
    return any(struct.unpack(order + "i", head[:4])[0] in NIFTI_HEADER_SIZES for order in "<>")


def _gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(4)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(path, f"corrupt gzip stream: {exc}") from None
