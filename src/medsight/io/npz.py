"""NumPy archives: MedMNIST split archives and single-image ``.npz``/``.npy`` files.

A MedMNIST archive holds ``{train,val,test}_{images,labels}``; it is a data set, read with
:func:`read_npz_arrays`. Any other archive is read as one image by :func:`read_npz_image`: the
array under ``"image"`` (or the only array), holding spatial axes only, ``(H, W)`` or
``(D, H, W)``, single channel; an optional ``"spacing"`` array gives its voxel size in mm.
Pickled objects are never loaded, since unpickling runs arbitrary code.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from monai.data import MetaTensor

from medsight.errors import InputFileError
from medsight.io.limits import check_image_size
from medsight.io.validate import checked_image, one_line

MEDMNIST_SPLITS = ("train", "val", "test")
# Deflate cannot expand data more than about 1032:1; a member claiming more is corrupt.
MAX_DEFLATE_RATIO = 1100


def load_arrays(path: str | Path, *, dataset: bool = False) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or the single array of an ``.npy``, under ``"image"``).

    Each array's header is checked before it is read: its shape must match the bytes actually
    stored (a lying header is corruption, not a request for memory) and fit the image size
    limit, or, for a data set (``dataset=True``), the machine's memory.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if m.filename.endswith(".npy")]
                total = 0
                for m in members:
                    with archive.open(m) as fh:
                        total += _check_header(path, fh, m.filename[:-4], _member_size(path, m), dataset)
                _check_total(path, total, dataset)
                return {m.filename[:-4]: _read_array(archive.open(m)) for m in members}
        with open(path, "rb") as fh:
            _check_header(path, fh, "image", path.stat().st_size, dataset)
            fh.seek(0)
            return {"image": np.lib.format.read_array(fh, allow_pickle=False)}
    except InputFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputFileError(path, f"unreadable NumPy file: {one_line(exc)}") from exc


def _read_array(fh: IO[bytes]) -> np.ndarray:
    with fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _member_size(path: Path, member: zipfile.ZipInfo) -> int:
    """The uncompressed size a zip member claims, refused if its compressed data cannot hold it."""
    if member.compress_type == zipfile.ZIP_STORED and member.file_size != member.compress_size:
        raise InputFileError(path, f"corrupt archive: stored member {member.filename!r} "
                                   f"claims {member.file_size:,} bytes in {member.compress_size:,}")
    if member.compress_type == zipfile.ZIP_DEFLATED and member.file_size > MAX_DEFLATE_RATIO * (
            member.compress_size + 1024):
        raise InputFileError(path, f"corrupt archive: member {member.filename!r} claims "
                                   f"{member.file_size:,} bytes from {member.compress_size:,} "
                                   "compressed (a zip bomb?)")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputFileError(path, f"member {member.filename!r} uses a compression NumPy never writes")
    return member.file_size


def _check_header(path: Path, fh: IO[bytes], name: str, stored: int, dataset: bool) -> int:
    """Read one ``.npy`` header from ``fh``; return the array's size in bytes once checked."""
    try:
        version = np.lib.format.read_magic(fh)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = readers[version](fh)
    except Exception as exc:  # numpy parses the header as a Python literal: any error is corruption
        raise InputFileError(path, f"array {name!r}: corrupt .npy header ({one_line(exc, 120)})") from exc
    data_start = fh.tell()
    if dtype.hasobject:
        raise InputFileError(path, "archive holds pickled objects, which are not loaded")
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes != stored - data_start:
        raise InputFileError(path, f"array {name!r}: header claims shape {shape} of {dtype} "
                                   f"({n_bytes:,} bytes) but {stored - data_start:,} bytes are stored")
    if dataset and shape:
        check_image_size(path, shape[1:], what=f"{name} item")
    elif not dataset:
        check_image_size(path, shape, what=f"array {name!r}")
    return n_bytes


def _check_total(path: Path, n_bytes: int, dataset: bool) -> None:
    memory = _physical_memory()
    if dataset and memory and n_bytes > memory:
        raise InputFileError(path, f"the archive's arrays need {n_bytes / 2**30:.1f} GiB, more "
                                   f"than this machine's {memory / 2**30:.1f} GiB of memory")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return None


def is_medmnist_archive(arrays: dict[str, np.ndarray]) -> bool:
    return any(key.endswith(("_images", "_labels")) for key in arrays)


def read_npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """A MedMNIST archive's arrays, checked: ``{split}_images`` ``(N, H, W[, 3])`` or
    ``(N, D, H, W)`` with ``{split}_labels`` ``(N,)`` or ``(N, K)`` for every split."""
    arrays = load_arrays(path, dataset=True)
    for split in MEDMNIST_SPLITS:
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None or labels is None:
            missing = [k for k in (f"{split}_images", f"{split}_labels") if k not in arrays]
            raise InputFileError(path, f"not a MedMNIST archive: missing {', '.join(missing)}")
        if images.ndim not in (3, 4) or images.shape[0] == 0:
            raise InputFileError(
                path, f"{split}_images must be (N, H, W[, C]) or (N, D, H, W), got {images.shape}"
            )
        if labels.ndim not in (1, 2) or len(labels) != len(images):
            raise InputFileError(
                path,
                f"{split}_labels shape {labels.shape} does not match {len(images)} {split} images",
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputFileError(path, f"{split}_labels must be integers, got {labels.dtype}")
    return arrays


def read_npz_image(path: str | Path) -> MetaTensor:
    """Read the single image of an ``.npz``/``.npy`` file as ``(1, *spatial)``."""
    arrays = load_arrays(path)
    if is_medmnist_archive(arrays):
        raise InputFileError(
            path,
            "this is a MedMNIST split archive, not one image; "
            "use it as a data set (data.dataset: medmnist)",
        )
    candidates = {k: v for k, v in arrays.items() if k != "spacing"}
    if "image" in candidates:
        image = candidates["image"]
    elif len(candidates) == 1:
        image = next(iter(candidates.values()))
    else:
        raise InputFileError(
            path, f"{len(candidates)} arrays and none named 'image'; cannot tell which is the image"
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise InputFileError(path, f"image array has non-numeric dtype {image.dtype}")
    spacing = arrays.get("spacing")
    if spacing is not None:
        if not np.issubdtype(spacing.dtype, np.number):
            raise InputFileError(path, f"spacing array has non-numeric dtype {spacing.dtype}")
        spacing = np.asarray(spacing, dtype=float).ravel()
        if len(spacing) != image.ndim:
            problem = f"spacing {tuple(spacing)} does not match image shape {image.shape}"
            raise InputFileError(path, problem)
    return checked_image(
        image[None], path, format="npz", spacing=None if spacing is None else tuple(spacing)
    )
