"""A data set described by a CSV manifest: ``path,label,patient_id[,split][,mask]``.

- ``path``: an image file or DICOM series folder; relative paths are resolved against the
  CSV's own folder, so a data set folder can be moved as a whole.
- ``label``: integers (used as class indices) or class names (indexed in sorted order, so the
  mapping is stable across runs and machines).
- ``patient_id``: keeps each patient in one split. It is never printed in errors or logs.
- ``split`` (optional): ``train``/``val``/``test``; without it, :func:`patient_split` decides.
- ``mask`` (optional; segmentation): the label map of the image, same grid. With a ``mask``
  column the ``label`` column may be left out.

Files are not opened here; :func:`medsight.data.loading.load_items` reads them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from medsight.data.splits import DEFAULT_FRACTIONS, count_leaks, patient_split
from medsight.data.types import SPLITS, Item, SplitData
from medsight.errors import InputFileError

REQUIRED_COLUMNS = ("path", "label", "patient_id")  # "label" optional when there is a "mask"


def manifest_dataset(
    csv_path: str | Path, *, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS,
    unsplit: str | None = None,
) -> SplitData:
    """Items per split from a manifest CSV (see the module docstring for its columns).

    Without a ``split`` column, rows are split by patient, or all go to ``unsplit`` when it
    is given (an external test set evaluated as a whole).
    """
    csv_path = Path(csv_path)
    rows = _read_rows(csv_path)
    has_mask = "mask" in rows[0]
    if "label" in rows[0]:
        labels, class_names = encode_labels([row["label"] for row in rows], csv_path)
    else:  # a segmentation manifest; class names come from the masks (the planner)
        labels, class_names = [0] * len(rows), []
    root = csv_path.parent
    items: list[Item] = [
        {
            "image": str(_resolve(root, row["path"])),
            "label": label,
            "patient_id": row["patient_id"],
            "id": row["path"],
            **({"mask": str(_resolve(root, row["mask"]))} if has_mask else {}),
        }
        for row, label in zip(rows, labels)
    ]
    patients = [item["patient_id"] for item in items]
    if "split" in rows[0]:
        splits = [row["split"] for row in rows]
        leaks = count_leaks(patients, splits)
        if leaks:
            raise InputFileError(
                csv_path,
                f"{leaks} patient(s) appear in more than one split; "
                "each patient's rows must share one split value",
            )
    elif unsplit is not None:
        splits = [unsplit] * len(items)
    else:
        splits = patient_split(patients, labels, fractions=fractions, seed=seed)
    per_split: dict[str, list[Item]] = {name: [] for name in SPLITS}
    for item, split in zip(items, splits):
        per_split[split].append(item)
    return SplitData(
        per_split["train"], per_split["val"], per_split["test"], class_names=class_names
    )


def is_segmentation_manifest(csv_path: str | Path) -> bool:
    """A manifest with a ``mask`` column and no ``label`` column: masks are all it teaches."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            columns = {c.strip() for c in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # reading it for training names the problem
    return "mask" in columns and "label" not in columns


def encode_labels(values: Sequence[str], source: str | Path) -> tuple[list[int], list[str]]:
    """Integer labels and class names: integers are kept; names are indexed in sorted order."""
    try:
        ints = [int(v) for v in values]
    except ValueError:
        names = sorted(set(values))
        index = {name: i for i, name in enumerate(names)}
        return [index[v] for v in values], names
    if min(ints) < 0:
        raise InputFileError(source, f"negative label {min(ints)}; labels must be >= 0 or names")
    return ints, [str(i) for i in range(max(ints) + 1)]


def _read_rows(csv_path: Path) -> list[dict[str, str]]:
    """Stripped, non-blank rows with the wanted columns; the split, if any, lower-cased."""
    try:
        # utf-8-sig: spreadsheet programs prepend a byte-order mark to the header.
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            raw_rows = [(reader.line_num, raw) for raw in reader]
    except FileNotFoundError:
        raise InputFileError(csv_path, "manifest CSV not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(csv_path, f"unreadable CSV: {exc}") from None
    if not columns:
        raise InputFileError(csv_path, "empty manifest CSV (expected header path,label,patient_id)")
    required = [c for c in REQUIRED_COLUMNS if not (c == "label" and "mask" in columns)]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputFileError(
            csv_path, f"missing column(s) {', '.join(missing)}; found {', '.join(columns)}"
        )
    wanted = [*required, *[c for c in ("split", "mask") if c in columns]]
    rows = []
    for line, raw in raw_rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
        if not any(row.values()):
            continue  # blank lines, e.g. a trailing one
        empty = [c for c in wanted if not row.get(c)]
        if empty:
            raise InputFileError(csv_path, f"line {line}: empty {', '.join(empty)}")
        if "split" in row:
            row["split"] = _split_name(row["split"], line, csv_path)
        rows.append({c: row[c] for c in wanted})
    if not rows:
        raise InputFileError(csv_path, "manifest CSV has a header but no rows")
    return rows


def _split_name(value: str, line: int, csv_path: Path) -> str:
    name = value.lower()
    if name not in SPLITS:
        raise InputFileError(
            csv_path, f"line {line}: unknown split {value!r}; use one of {', '.join(SPLITS)}"
        )
    return name


def _resolve(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate
