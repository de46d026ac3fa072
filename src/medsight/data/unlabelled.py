"""Images without labels, for self-supervised pretraining: any data set medsight reads, labels ignored.

Besides every labelled layout (``.npz``, manifest, class folders, MSD), this takes what an
archive export usually is: a flat folder of image files (each file its own case), or a manifest
with a ``path`` column alone. Train and val are split by patient where the data say who the
patient is; pretraining learns on train, and val only scores the contrastive loss.
"""

from __future__ import annotations

import csv
from pathlib import Path

from medsight.config import DataConfig
from medsight.data.folder import SYSTEM_FILES
from medsight.data.registry import build_dataset
from medsight.data.splits import patient_split
from medsight.data.types import SPLITS, Item, SplitData
from medsight.errors import InputFileError

CLASS_NAMES = ["image"]  # one pseudo-class: the planner and the cache count labels


def unlabelled_dataset(cfg: DataConfig, seed: int = 0) -> SplitData:
    """Items per split of any readable data set, every label 0 and masks dropped."""
    path = Path(cfg.path) if cfg.path is not None else None
    if cfg.dataset == "folder" and path is not None and path.is_dir() and not _visible_dirs(path):
        data = _split(_flat_folder(path), cfg, seed)
    elif cfg.dataset == "manifest" and path is not None and not {"label", "patient_id"} <= _header(path):
        data = _split(_path_rows(path), cfg, seed)
    else:
        data = build_dataset(cfg, seed)
    parts = {s: [{k: v for k, v in it.items() if k != "mask"} | {"label": 0} for it in data.split(s)]
             for s in SPLITS}
    return SplitData(parts["train"], parts["val"], parts["test"], list(CLASS_NAMES), data.skipped,
                     data.image_columns)


def _visible_dirs(folder: Path) -> list[Path]:
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]


def _flat_folder(root: Path) -> list[Item]:
    files = sorted(f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")
                   and f.name not in SYSTEM_FILES)
    if not files:
        raise InputFileError(root, "no image files found")
    return [{"image": str(f), "label": 0, "patient_id": f.name, "id": f.name} for f in files]


def _header(csv_path: Path) -> set[str]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            return {c.strip() for c in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(csv_path, f"unreadable CSV: {exc}") from None


def _path_rows(csv_path: Path) -> list[Item]:
    """A manifest's ``path`` column (relative to the CSV), ``patient_id`` where it has one."""
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if isinstance(v, str)}
                for r in csv.DictReader(fh)]
    rows = [r for r in rows if any(r.values())]
    if not rows or "path" not in rows[0]:
        raise InputFileError(csv_path, "expected a path column (one image per row)")
    items = []
    for line, row in enumerate(rows, start=2):
        if not row.get("path"):
            raise InputFileError(csv_path, f"line {line}: empty path")
        p = Path(row["path"])
        p = p if p.is_absolute() else csv_path.parent / p
        items.append({"image": str(p), "label": 0, "patient_id": row.get("patient_id") or row["path"],
                      "id": row["path"]})
    return items


def _split(items: list[Item], cfg: DataConfig, seed: int) -> SplitData:
    splits = patient_split([it["patient_id"] for it in items], [0] * len(items), cfg.split_fractions, seed)
    parts: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for item, split in zip(items, splits):
        parts[split].append(item)
    return SplitData(parts["train"], parts["val"], parts["test"], list(CLASS_NAMES))
