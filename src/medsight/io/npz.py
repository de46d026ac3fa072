"""NumPy archives: MedMNIST split archives and single-image ``.npz``/``.npy`` files.

A MedMNIST archive holds ``{train,val,test}_{images,labels}``; it is a data set, read with
:func:`read_npz_arrays`. Any other archive is read as one image by :func:`read_npz_image`: the
array under ``"image"`` (or the only array), holding spatial axes only, ``(H, W)`` or
``(D, H, W)``, single channel; an optional ``"spacing"`` array gives its voxel size in mm.
Pickled objects are never loaded, since unpickling runs arbitrary code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from medsight.errors import InputFileError
from medsight.io.validate import checked_image, one_line

MEDMNIST_SPLITS = ("train", "val", "test")


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or the single array of an ``.npy``, under ``"image"``)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # an .npy holds one bare array
            return {"image": loaded}
        with loaded:  # members are read lazily, so corruption surfaces here
            return {key: loaded[key] for key in loaded.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            problem = "archive holds pickled objects, which are not loaded"
            raise InputFileError(path, problem) from exc
        raise InputFileError(path, f"unreadable NumPy file: {one_line(exc)}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(path, f"unreadable NumPy file: {one_line(exc)}") from exc


def is_medmnist_archive(arrays: dict[str, np.ndarray]) -> bool:
    return any(key.endswith(("_images", "_labels")) for key in arrays)


def read_npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """A MedMNIST archive's arrays, checked: ``{split}_images`` ``(N, H, W[, 3])`` or
    ``(N, D, H, W)`` with ``{split}_labels`` ``(N,)`` or ``(N, K)`` for every split."""
    arrays = load_arrays(path)
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
        spacing = np.asarray(spacing, dtype=float).ravel()
        if len(spacing) != image.ndim:
            problem = f"spacing {tuple(spacing)} does not match image shape {image.shape}"
            raise InputFileError(path, problem)
    return checked_image(
        image[None], path, format="npz", spacing=None if spacing is None else tuple(spacing)
    )
