"""The Medical Segmentation Decathlon layout: ``dataset.json``, ``imagesTr/``, ``labelsTr/``.

``dataset.json`` lists the training pairs and names the labels (``{"0": "background",
"1": "Anterior", ...}``); each case is its own patient. Files are not opened here;
:func:`medsight.data.loading.load_items` reads them and checks each mask against its image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from medsight.data.splits import DEFAULT_FRACTIONS, patient_split
from medsight.data.types import SPLITS, Item, SplitData
from medsight.errors import InputFileError

DATASET_JSON = "dataset.json"


def msd_dataset(root: str | Path, *, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                unsplit: str | None = None) -> SplitData:
    """Items (image and mask paths) per split from an MSD-layout folder."""
    root = Path(root)
    meta = read_dataset_json(root)
    items = [_item(root, entry, i) for i, entry in enumerate(meta["training"])]
    patients = [it["patient_id"] for it in items]
    if unsplit is not None:
        splits = [unsplit] * len(items)
    else:
        splits = patient_split(patients, [0] * len(items), fractions=fractions, seed=seed)
    per_split: dict[str, list[Item]] = {name: [] for name in SPLITS}
    for item, split in zip(items, splits):
        per_split[split].append(item)
    labels = meta["labels"]  # empty without dataset.json: the model's own names are used
    names = [str(labels[k]) for k in sorted(labels, key=int)]
    return SplitData(per_split["train"], per_split["val"], per_split["test"], class_names=names)


def read_dataset_json(root: Path) -> dict:
    """``dataset.json``; without one, the pairs of same-named files in imagesTr/ and labelsTr/."""
    path = root / DATASET_JSON
    if not path.is_file():
        if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
            return _pairs_without_json(root)
        raise InputFileError(root, f"not an MSD data set folder (no {DATASET_JSON}, no imagesTr/ and labelsTr/)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    return _check(meta, path)


def _check(meta: object, path: Path) -> dict:
    if not isinstance(meta, dict):
        raise InputFileError(path, "expected a JSON object")
    labels, training = meta.get("labels"), meta.get("training")
    if not isinstance(labels, dict) or not labels or not all(str(k).isdigit() for k in labels):
        raise InputFileError(path, 'needs "labels": {"0": "background", "1": "...", ...}')
    if sorted(int(k) for k in labels) != list(range(len(labels))):
        raise InputFileError(path, f"label values must be 0..{len(labels) - 1}, got {sorted(labels, key=int)}")
    if not isinstance(training, list) or not training:
        raise InputFileError(path, 'needs a non-empty "training" list of {"image": ..., "label": ...}')
    return meta


def _pairs_without_json(root: Path) -> dict:
    labels = {p.name for p in (root / "labelsTr").iterdir() if not p.name.startswith(".")}
    training = [{"image": f"imagesTr/{p.name}", "label": f"labelsTr/{p.name}"}
                for p in sorted((root / "imagesTr").iterdir()) if p.name in labels]
    if not training:
        raise InputFileError(root, "no image in imagesTr/ has a same-named label in labelsTr/")
    return {"labels": {}, "training": training}


def _item(root: Path, entry: object, index: int) -> Item:
    if not isinstance(entry, dict) or not {"image", "label"} <= set(entry):
        raise InputFileError(root / DATASET_JSON, f"training entry {index} needs image and label paths")
    image, mask = root / entry["image"], root / entry["label"]
    case = Path(str(entry["image"])).name.split(".")[0]
    return {"image": str(image), "mask": str(mask), "patient_id": case, "id": case}
