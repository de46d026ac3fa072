"""NIfTI-1/NIfTI-2 files (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs) read with nibabel.

Array axes are NIfTI's voxel axes ``(i, j, k)``; the affine is the file's own (sform, else
qform), which is RAS by definition. Trailing singleton spatial axes are dropped, so a 2D image
stored as ``(X, Y, 1)`` comes back 2D. A 4th axis holds channels (modalities, RGB, time points);
a 5D ``(X, Y, Z, 1, C)`` vector image, nibabel's layout for vector intents, does too.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
from monai.data import MetaTensor

from medsight.errors import InputFileError
from medsight.io.limits import check_image_size
from medsight.io.validate import check_spatial_shape, checked_image, one_line


def read_nifti(path: str | Path) -> MetaTensor:
    """Read a NIfTI image as ``(C, *spatial)`` with spacing from the header zooms."""
    try:
        with warnings.catch_warnings(), _nibabel_logs_to_root(), ExitStack() as files:
            # nibabel warns about odd-but-readable headers (e.g. pixdim[0]); the data is fine.
            warnings.simplefilter("ignore")
            image = _load(Path(path), files)
            if not isinstance(image, nib.Nifti1Pair):  # the base of every NIfTI-1/-2 class
                problem = f"{type(image).__name__} is not NIfTI; convert it to NIfTI first"
                raise InputFileError(path, problem)
            # Only the header has been read so far: refuse a lying one before allocating.
            fields = len(image.header.get_data_dtype().names or ()) or 1
            check_image_size(path, (*image.header.get_data_shape(), fields))
            _check_stored_size(Path(path), image)
            data = np.asanyarray(image.dataobj)  # applies scl_slope/scl_inter
    except InputFileError:
        raise
    except Exception as exc:  # nibabel/gzip/zlib raise many types for broken files
        raise InputFileError(path, f"unreadable NIfTI: {one_line(exc)}") from exc
    if data.dtype.names:  # RGB24/RGBA32 voxels are structured (R, G, B[, A])
        data = np.stack([data[name] for name in data.dtype.names[:3]], axis=-1)

    shape = tuple(data.shape)
    if data.ndim == 5 and shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim > 4:
        raise InputFileError(path, f"expected a 2D or 3D image, got shape {shape}")
    if data.ndim < 4:
        data = data[..., None]
    spatial = data.shape[:-1]
    n_spatial = len(spatial)
    while n_spatial > 2 and spatial[n_spatial - 1] == 1:
        n_spatial -= 1
    check_spatial_shape(spatial[:n_spatial], path)

    array = np.moveaxis(data, -1, 0).reshape(data.shape[-1], *spatial[:n_spatial])
    zooms = image.header.get_zooms()[:n_spatial]
    return checked_image(
        array, path, format="nifti", spacing=zooms, affine=image.affine, space="RAS"
    )


@contextmanager
def _nibabel_logs_to_root() -> Iterator[None]:
    """nibabel prints its header fixes ("sizeof_hdr should be 348...") through a handler of its
    own; without it the records reach the application's logging like any library's (the CLI
    shows them with --verbose only)."""
    logger = nib.imageglobals.logger
    handlers = list(logger.handlers)
    for handler in handlers:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logger.addHandler(handler)


def _check_stored_size(path: Path, image: nib.Nifti1Pair) -> None:
    """Refuse a header claiming more voxel bytes than its file holds, before nibabel allocates
    them. Gzipped files are judged by the stream's recorded size (exact below 4 GiB)."""
    header = image.header
    claimed = int(header.get_data_offset()) + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
    holder = image.file_map["image"].filename
    source = Path(holder) if holder else path
    with open(source, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
        if gzipped:
            if claimed >= 2**32:
                return  # the gzip trailer holds the size modulo 2**32: no verdict
            fh.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", fh.read(4))[0]
        else:
            stored = source.stat().st_size
    if claimed > stored:
        raise InputFileError(path, f"truncated NIfTI: the header needs {claimed:,} bytes, "
                                   f"the {'decompressed ' if gzipped else ''}file holds {stored:,}")


def _load(path: Path, files: ExitStack) -> nib.filebasedimages.FileBasedImage:
    """``nib.load``, or for a renamed file (nibabel goes by extension) a parse of its stream.

    Either way only the header is read here; the voxels are read when ``dataobj`` is used,
    while ``files`` keeps the stream open.
    """
    if path.name.lower().endswith((".nii", ".nii.gz", ".hdr", ".hdr.gz")):
        return nib.load(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    stream = files.enter_context(gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb"))
    first = stream.read(4)
    stream.seek(0)
    sizes = {struct.unpack(order + "i", first)[0] for order in "<>"} if len(first) == 4 else set()
    image_class = nib.Nifti2Image if 540 in sizes else nib.Nifti1Image
    return image_class.from_stream(stream)
