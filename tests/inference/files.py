"""Inputs written as users hand them over: one synthetic CT slice in every format ``predict``
reads (shared with test_cli), nodule slices with masks as a NIfTI manifest, a run planned at a spacing."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from medsight.data.synthetic import synthetic_sample
from medsight.io.dicom_write import write_ct_slice
from medsight.io.image import spacing_of
from medsight.io.write import write_nifti, write_png

LUNG_WINDOW = (-1350.0, 150.0)
SPACING = 350.0 / 64  # the synthetic slices' pixel size (mm), the grid the segmentation fixture learnt


def nodule_index(start: int = 0) -> int:
    """Index of the first test slice with a nodule at or after ``start``."""
    index = start
    while synthetic_sample(0, "test", index)["label"] != 1:
        index += 1
    return index


def write_slice_files(folder: Path, index: int | None = None) -> dict[str, Path]:
    """The same slice as a CT DICOM (HU), a NIfTI (HU) and an 8-bit PNG (lung window)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = synthetic_sample(0, "test", nodule_index() if index is None else index)["image"]
    paths = {"dicom": folder / "slice.dcm", "nifti": folder / "slice.nii.gz", "png": folder / "slice.png"}
    write_ct_slice(image[0].numpy(), paths["dicom"], spacing_of(image))
    write_nifti(image, paths["nifti"])
    write_png(image, paths["png"], window=LUNG_WINDOW)
    return paths


def nodule_cases(split: str, n: int, nodule_fraction: float = 0.7) -> list[dict]:
    """The first ``n`` synthetic slices of a split as the segmentation fixture draws them."""
    return [synthetic_sample(0, split, i, 64, nodule_fraction) for i in range(n)]


def write_nodule_manifest(folder: Path, cases: dict[str, list[dict]]) -> Path:
    """Slices and their nodule masks as NIfTI files, listed in ``manifest.csv`` (``path,mask,
    patient_id,split``, paths relative to it), as a user's own segmentation data set is."""
    rows = []
    for split, items in cases.items():
        for i, item in enumerate(items):
            name = f"{split}{i:03d}.nii.gz"
            write_nifti(item["image"], folder / "images" / name)
            write_nifti(item["mask"], folder / "masks" / name)
            rows.append(f"images/{name},masks/{name},{split}-{i},{split}")
    manifest = folder / "manifest.csv"
    manifest.write_text("path,mask,patient_id,split\n" + "\n".join(rows) + "\n")
    return manifest


def run_planned_at(run: Path, folder: Path, spacing: list[float]) -> Path:
    """A copy of ``run`` whose preprocessing resamples to ``spacing`` first, as a run planned on
    data of mixed spacings does. Every training slice already had this spacing, so for them the
    resampling changes nothing: the trained weights fit this pipeline as well as the original."""
    copy = Path(shutil.copytree(run, folder))
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["transforms"]["spacing"] = spacing
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return copy
