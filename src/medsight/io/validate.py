"""The checks every reader applies before handing an image out.

Readers produce a channel-first array ``(C, *spatial)``; :func:`checked_image` rejects what
training cannot use (empty, wrong dimensionality, NaN/inf) as an :class:`InputFileError`
naming the file, then builds the ``MetaTensor`` with :func:`medsight.io.image.make_image`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from medsight.errors import InputFileError
from medsight.io.image import make_image


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """A library's (possibly multi-line) error message folded into one short line."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_spatial_shape(shape: Sequence[int], path: str | Path) -> None:
    """Raise unless ``shape`` (spatial axes only) is a non-empty 2D or 3D shape."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3):
        raise InputFileError(path, f"expected a 2D or 3D image, got shape {shape}")
    if 0 in shape:
        raise InputFileError(path, f"empty image (shape {shape})")


def checked_image(
    array: np.ndarray,
    path: str | Path,
    *,
    format: str,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    **meta: Any,
) -> MetaTensor:
    """Validate a channel-first array read from ``path`` and wrap it as a medsight image."""
    check_spatial_shape(array.shape[1:], path)
    if array.shape[0] == 0:
        raise InputFileError(path, f"image has no channels (shape {tuple(array.shape)})")
    # Cast first: float64 values beyond float32's range only become inf here. Cast and C order in
    # one copy: NIfTI arrays come Fortran-ordered, and a CT volume is 315 MB per float32 copy.
    integers = array.dtype.kind in "biu"  # always finite, also as float32: no check (and no mask of it)
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    if not integers and not np.isfinite(array).all():
        problem = "contains NaN values" if np.isnan(array).any() else "contains infinite values"
        raise InputFileError(path, problem)
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            # A zero or negative zoom is a broken header, not a usable geometry.
            raise InputFileError(path, f"invalid voxel spacing {spacing}")
    meta.update(format=format, source=str(path))
    return make_image(array, spacing=spacing, affine=affine, **meta)


def as_image(image: Any, name: str = "array") -> MetaTensor:
    """An in-memory image as a medsight image: a ``MetaTensor`` as it is, a numpy array or torch
    tensor channel first ``(C, H, W)`` / ``(C, D, H, W)`` (a 2D numpy array is one grey channel)
    with unit spacing. Bad shapes, types, NaNs or infinities are one-line :class:`InputFileError`."""
    if isinstance(image, MetaTensor):
        if not bool(torch.isfinite(image.as_tensor()).all()):
            raise InputFileError(image.meta.get("source", name), "contains NaN or infinite values")
        return image
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    elif isinstance(image, np.ndarray):
        array = image[None] if image.ndim == 2 else image
    else:
        raise InputFileError(name, f"expected a path, numpy array, torch tensor or MetaTensor, got "
                                   f"{type(image).__name__}")
    if array.dtype.kind not in "biuf":
        raise InputFileError(name, f"expected numbers, got an array of dtype {array.dtype}")
    if array.ndim not in (3, 4):
        raise InputFileError(name, f"expected a channel-first (C, H, W) or (C, D, H, W) array, got shape "
                                   f"{tuple(array.shape)}")
    return checked_image(array, name, format="array")
