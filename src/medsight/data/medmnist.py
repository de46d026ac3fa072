"""MedMNIST v2 ``.npz`` files as a data set, with their official train/val/test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.types import SPLITS, SplitData
from medsight.errors import InputFileError
from medsight.io.image import make_image

# Label names from MedMNIST's INFO table, for the sets we ship configs for.
KNOWN_CLASS_NAMES = {
    "breastmnist": ["malignant", "normal, benign"],
    "retinamnist": ["grade 0", "grade 1", "grade 2", "grade 3", "grade 4"],
    "adrenalmnist3d": ["normal", "hyperplasia"],
    "pneumoniamnist": ["normal", "pneumonia"],
}


def medmnist_dataset(path: str | Path) -> SplitData:
    """Read a MedMNIST ``.npz`` (2D grey/RGB or 3D) into items, keeping the official splits."""
    from medsight.io.npz import read_npz_arrays

    path = Path(path)
    arrays = read_npz_arrays(path)
    splits = {}
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise InputFileError(path, f"{split}: {len(images)} images but {len(labels)} labels")
        if labels.ndim > 1 and labels.shape[1] > 1:
            raise InputFileError(path, "multi-label MedMNIST sets are not supported yet")
        splits[split] = [_item(path, split, i, img, int(lab)) for i, (img, lab) in
                         enumerate(zip(images, labels.reshape(len(labels), -1)[:, 0]))]
    n_classes = 1 + max(int(it["label"]) for s in splits.values() for it in s)
    key = path.stem.split("_")[0].lower()
    names = KNOWN_CLASS_NAMES.get(key)
    if names is None or len(names) < n_classes:
        names = [str(i) for i in range(n_classes)]
    return SplitData(**splits, class_names=list(names))


def _item(path: Path, split: str, index: int, img: np.ndarray, label: int) -> dict:
    # MedMNIST stores 2D RGB as (H, W, 3) and 2D grey / 3D as (H, W) / (D, H, W).
    arr = np.moveaxis(img, -1, 0) if img.ndim == 3 and img.shape[-1] == 3 else img[None]
    image = make_image(arr, modality="OT", format="npz", source=f"{path.name}:{split}:{index}")
    return {"image": image, "label": label, "patient_id": f"{split}-{index:05d}",
            "id": f"{path.stem}-{split}-{index:05d}"}
