"""Writing images: NIfTI for volumes and results, PNG for pictures. Both writes are atomic."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from medsight.utils.atomic import write_bytes


def write_nifti(image: torch.Tensor, path: str | Path) -> None:
    """Save a ``(C, *spatial)`` image as NIfTI (gzipped if ``path`` ends in ``.gz``).

    The affine comes from the image's meta (RAS, like every medsight reader); several
    channels go to the 4th NIfTI axis, which is where :func:`medsight.io.read_image` finds them.
    Integer images (label maps) are stored as integers (uint8 up to 255 labels), so viewers open
    them as label maps; others as float32.
    """
    array = image.detach().cpu().numpy()
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        small = array.size == 0 or (array.min() >= 0 and array.max() <= 255)
        array = array.astype(np.uint8 if small else np.int32)
    else:
        array = array.astype(np.float32)
    if array.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (C, D, H, W), got shape {array.shape}")
    affine = getattr(image, "affine", None)
    affine = np.eye(4) if affine is None else np.asarray(affine.detach().cpu(), dtype=np.float64)
    data = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    if array.shape[0] > 1 and array.ndim == 3:
        data = data[:, :, None, :]  # NIfTI's channel axis is the 4th, after a singleton z
    nifti = nib.Nifti1Image(data, affine)
    nifti.header.set_xyzt_units("mm")
    # Serialised in memory because nibabel picks the format from the file name, and the
    # atomic temporary file has none.
    payload = nifti.to_bytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    write_bytes(path, payload)


def write_png(
    image: np.ndarray | torch.Tensor,
    path: str | Path,
    *,
    window: tuple[float, float] | None = None,
) -> None:
    """Save a 2D grey or RGB image, ``(H, W)`` or ``(1|3, H, W)``, as an 8-bit PNG.

    uint8 arrays are written unchanged. Other arrays are mapped linearly from ``window``
    (default: their own min and max) to 0..255, values outside it clipped.
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    if array.ndim != 2 and not (array.ndim == 3 and array.shape[-1] == 3):
        raise ValueError(f"expected (H, W) or (1|3, H, W), got shape {tuple(np.shape(image))}")
    if array.dtype != np.uint8:
        low, high = window if window is not None else (float(array.min()), float(array.max()))
        scale = 255.0 / (high - low) if high > low else 0.0
        array = np.clip((array.astype(np.float64) - low) * scale, 0, 255).round().astype(np.uint8)
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format="PNG")
    write_bytes(path, stream.getvalue())
