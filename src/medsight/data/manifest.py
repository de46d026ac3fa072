"""A data set described by a CSV manifest: ``path,label,patient_id[,split][,mask]``.

- ``path``: an image file or DICOM series folder; relative paths are resolved against the
  CSV's own folder, so a data set folder can be moved as a whole.
- ``label``: integers (used as class indices) or class names (indexed in sorted order, so the
  mapping is stable across runs and machines).
- ``patient_id``: keeps each patient in one split. It is never printed in errors or logs.
- ``split`` (optional): ``train``/``val``/``test``; without it, :func:`patient_split` decides.
- ``mask`` (optional; segmentation): the label map of the image, same grid. With a ``mask``
  column the ``label`` column may be left out.
- ``path_<name>`` (optional): more images of the same case (MR sequences, image pairs), stacked
  after ``path`` as channels in column order (or as ``data.images`` lists them); each is
  resampled to ``path``'s grid when it is read (``medsight.transforms.stacking``).
- clinical columns named in ``data.clinical`` (optional): values such as age, sex or a lab
  result; empty cells are missing values (imputed, see ``medsight.transforms.clinical``).

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
    images: Sequence[str] | None = None, clinical: Sequence[str] = (),
) -> SplitData:
    """Items per split from a manifest CSV (see the module docstring for its columns).

    Without a ``split`` column, rows are split by patient, or all go to ``unsplit`` when it
    is given (an external test set evaluated as a whole). ``images``: the columns stacked as
    channels (None: ``path`` and every ``path_<name>``); ``clinical``: columns kept per item.
    """
    csv_path = Path(csv_path)
    rows, columns = _read_rows(csv_path, images, clinical)
    if "label" in rows[0]:
        labels, class_names = encode_labels([row["label"] for row in rows], csv_path)
    else:  # a segmentation manifest; class names come from the masks (the planner)
        labels, class_names = [0] * len(rows), []
    items = [{**_case_item(csv_path.parent, row, columns, clinical), "label": label,
              "patient_id": row["patient_id"]} for row, label in zip(rows, labels)]
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
        per_split["train"], per_split["val"], per_split["test"], class_names=class_names,
        image_columns=columns,
    )


def case_items(csv_path: str | Path, images: Sequence[str], clinical: Sequence[str] = ()) -> list[Item]:
    """Cases to predict from a CSV with the image columns a run was trained on (``path``,
    ``path_<name>``...) and its clinical columns; labels and patient IDs are not needed."""
    csv_path = Path(csv_path)
    rows, columns = _read_rows(csv_path, images, clinical, required=("path",))
    return [{**_case_item(csv_path.parent, row, columns, clinical), "label": -1} for row in rows]


def _case_item(root: Path, row: dict[str, str], columns: Sequence[str], clinical: Sequence[str]) -> Item:
    """One row's image path(s), clinical values and mask; ``id`` is the row's ``path`` as written."""
    item: Item = {"image": str(_resolve(root, row["path"])), "id": row["path"]}
    if len(columns) > 1:
        item["extra_images"] = [str(_resolve(root, row[c])) for c in columns[1:]]
    if clinical:
        item["clinical"] = {c: row[c] for c in clinical}
    if "mask" in row:
        item["mask"] = str(_resolve(root, row["mask"]))
    return item


def image_columns(columns: Sequence[str], images: Sequence[str] | None, source: Path) -> list[str]:
    """The columns stacked as channels: ``images`` if given, else ``path`` and every
    ``path_<name>`` column in the CSV's order."""
    if images is None:
        return ["path", *[c for c in columns if c.startswith("path_")]]
    missing = [c for c in images if c not in columns]
    if missing:
        raise InputFileError(source, f"missing image column(s) {', '.join(missing)} (data.images); "
                                     f"found {', '.join(columns)}")
    return list(images)


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


def _read_rows(csv_path: Path, images: Sequence[str] | None = None, clinical: Sequence[str] = (),
               required: Sequence[str] = REQUIRED_COLUMNS) -> tuple[list[dict[str, str]], list[str]]:
    """Stripped, non-blank rows with the wanted columns (the split, if any, lower-cased), and
    the image columns. Image cells must be filled; clinical cells may be empty (missing)."""
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
    required = [c for c in required if not (c == "label" and "mask" in columns)]
    missing = [c for c in [*required, *clinical] if c not in columns]
    if missing:
        raise InputFileError(
            csv_path, f"missing column(s) {', '.join(missing)}; found {', '.join(columns)}"
        )
    images = image_columns(columns, images, csv_path)
    wanted = [*required, *[c for c in ("split", "mask") if c in columns], *images[1:]]
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
        rows.append({c: row.get(c, "") for c in [*wanted, *clinical]})
    if not rows:
        raise InputFileError(csv_path, "manifest CSV has a header but no rows")
    return rows, images


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
