"""A tiny Medical Segmentation Decathlon folder written with nibabel (shared by data, bench tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

LABELS = {"0": "background", "1": "Anterior", "2": "Posterior"}


def blob_case(rng: np.random.Generator, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """An MR-like volume with two touching ellipsoids labelled 1 and 2, brighter than the rest."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"))
    centre = np.array(shape, dtype=float)[:, None, None, None] / 2 + rng.uniform(-2, 2, (3, 1, 1, 1))
    radii = np.array(shape, dtype=float)[:, None, None, None] / 4
    inside = (((grid - centre) / radii) ** 2).sum(0) <= 1
    label = np.zeros(shape, np.uint8)
    label[inside & (grid[0] < centre[0, 0, 0, 0])] = 1
    label[inside & (grid[0] >= centre[0, 0, 0, 0])] = 2
    image = rng.normal(100, 10, shape) + 80.0 * (label == 1) + 140.0 * (label == 2)
    return image.astype(np.float32), label


def write_msd(root: Path, n: int = 6, shape: Sequence[int] = (20, 24, 16), spacing=(1.0, 1.0, 1.0),
              seed: int = 0, dataset_json: bool = True, affine: np.ndarray | None = None) -> Path:
    """``root/dataset.json``, ``imagesTr/case_XXX.nii.gz`` and ``labelsTr/case_XXX.nii.gz``."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    affine = np.diag([*spacing, 1.0]) if affine is None else affine
    training = []
    for i in range(n):
        image, label = blob_case(rng, shape)
        name = f"case_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    if dataset_json:
        meta = {"name": "Tiny", "modality": {"0": "MRI"}, "labels": LABELS, "numTraining": n,
                "training": training, "test": []}
        (root / "dataset.json").write_text(json.dumps(meta))
    return root
