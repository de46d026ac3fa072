"""A data set laid out as one sub-folder per class::

    root/normal/a.png          root/train/normal/a.png
    root/pneumonia/b.dcm   or  root/val/normal/c.png     (splits given by the layout)
                               root/test/pneumonia/d.png

Class names are the sorted class-folder names. Every file directly inside a class folder is
one item, and so is every sub-folder (read as a DICOM series); hidden files are ignored.

Folders do not say which images belong to one patient, so by default every item is its own
patient. With ``patient_from="prefix"`` the patient is the file name's part before the first
``_`` (``p017_left.png`` and ``p017_right.png`` are both patient ``p017``; a name without
``_`` is its own patient), which keeps a patient's images together in one split, whether
medsight makes the split or checks the given one. For anything else, use a manifest CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

from medsight.data.splits import DEFAULT_FRACTIONS, count_leaks, patient_split
from medsight.data.types import SPLITS, Item, SplitData
from medsight.errors import InputFileError

PatientFrom = Literal["file", "prefix"]
# Files operating systems drop into folders; they are never images.
SYSTEM_FILES = {"Thumbs.db", "desktop.ini", "DICOMDIR"}


def folder_dataset(
    root: str | Path,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    patient_from: PatientFrom = "file",
    unsplit: str | None = None,
) -> SplitData:
    """Items per split from a class-per-folder tree (see the module docstring).

    Without split folders, files are split by patient, or all go to ``unsplit`` when given.
    """
    root = Path(root)
    if patient_from not in ("file", "prefix"):
        raise ValueError(f"patient_from must be 'file' or 'prefix', got {patient_from!r}")
    if not root.is_dir():
        problem = "not a folder" if root.exists() else "data set folder not found"
        raise InputFileError(root, problem)
    subfolders = _visible_dirs(root)
    split_folders = [d for d in subfolders if d.name in SPLITS]
    if split_folders and len(split_folders) != len(subfolders):
        others = sorted(d.name for d in subfolders if d.name not in SPLITS)
        raise InputFileError(
            root, f"mixes split folders (train/val/test) with other folders: {', '.join(others)}"
        )

    per_split: dict[str, list[Item]]
    if split_folders:
        class_names = sorted({c.name for d in split_folders for c in _visible_dirs(d)})
        per_split = {name: _items(root / name, root, class_names, patient_from) for name in SPLITS}
        all_items = [item for items in per_split.values() for item in items]
        leaks = count_leaks(
            [item["patient_id"] for item in all_items],
            [split for split, items in per_split.items() for _ in items],
        )
        if leaks:
            raise InputFileError(root, f"{leaks} patient(s) appear in more than one split folder")
    else:
        class_names = [d.name for d in subfolders]
        all_items = _items(root, root, class_names, patient_from)
        splits = [unsplit] * len(all_items) if unsplit is not None else patient_split(
            [item["patient_id"] for item in all_items],
            [item["label"] for item in all_items],
            fractions=fractions,
            seed=seed,
        )
        per_split = {name: [] for name in SPLITS}
        for item, split in zip(all_items, splits, strict=True):
            per_split[split].append(item)

    if not class_names:
        raise InputFileError(
            root, "expected one sub-folder per class (e.g. normal/, pneumonia/), found none"
        )
    if not all_items:
        raise InputFileError(root, "no image files found in the class folders")
    return SplitData(
        per_split["train"], per_split["val"], per_split["test"], class_names=class_names
    )


def _items(
    folder: Path, root: Path, class_names: list[str], patient_from: PatientFrom
) -> list[Item]:
    """One item per file or sub-folder of each class folder under ``folder`` (if it exists)."""
    items: list[Item] = []
    for label, class_name in enumerate(class_names):
        class_dir = folder / class_name
        if not class_dir.is_dir():
            continue  # a split may lack a class, e.g. a tiny test split
        for entry in sorted(class_dir.iterdir()):
            if entry.name.startswith(".") or entry.name in SYSTEM_FILES:
                continue
            item_id = entry.relative_to(root).as_posix()
            if patient_from == "prefix":
                patient = entry.name.split("_", 1)[0]
            else:
                patient = item_id
            items.append(
                {"image": str(entry), "label": label, "patient_id": patient, "id": item_id}
            )
    return items


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
