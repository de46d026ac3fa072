"""NIfTI-1/NIfTI-2 files (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs) read with nibabel.

Array axes are NIfTI's voxel axes ``(i, j, k)``; the affine is the file's own (sform, else
qform), which is RAS by definition. Trailing singleton spatial axes are dropped, so a 2D image
stored as ``(X, Y, 1)`` comes back 2D. A 4th axis holds channels (modalities, RGB, time points);
a 5D ``(X, Y, Z, 1, C)`` vector image, nibabel's layout for vector intents, does too.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import MetaTensor

from medsight.errors import InputFileError
from medsight.io.validate import check_spatial_shape, checked_image, one_line


def read_nifti(path: str | Path) -> MetaTensor:
    """Read a NIfTI image as ``(C, *spatial)`` with spacing from the header zooms."""
    try:
        with warnings.catch_warnings():
            # nibabel warns about odd-but-readable headers (e.g. pixdim[0]); the data is fine.
            warnings.simplefilter("ignore")
            image = _load(Path(path))
            if not isinstance(image, nib.Nifti1Pair):  # the base of every NIfTI-1/-2 class
                problem = f"{type(image).__name__} is not NIfTI; convert it to NIfTI first"
                raise InputFileError(path, problem)
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


def _load(path: Path) -> nib.filebasedimages.FileBasedImage:
    """``nib.load``, or for a renamed file (nibabel goes by extension) a parse of its bytes."""
    if path.name.lower().endswith((".nii", ".nii.gz", ".hdr", ".hdr.gz")):
        return nib.load(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    sizes = {struct.unpack(order + "i", data[:4])[0] for order in "<>"}
    image_class = nib.Nifti2Image if 540 in sizes else nib.Nifti1Image
    return image_class.from_bytes(data)
