"""What a data set hands to training: items per split, plus the class names.

An *item* is a dict ready for MONAI datasets and transforms::

    {"image": <path str | MetaTensor>, "label": int, "patient_id": str, "id": str}

File-based data sets (manifest, folder) give paths; in-memory ones (MedMNIST, synthetic)
give ``MetaTensor`` images. ``load_items`` (``medsight.data.loading``) turns paths into
images once per run, applying the bad-file policy. Segmentation items add ``"mask"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medsight.errors import ConfigError

SPLITS = ("train", "val", "test")

Item = dict[str, Any]


@dataclass
class SplitData:
    """Items per split and the label vocabulary of one data set."""

    train: list[Item]
    val: list[Item]
    test: list[Item]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, problem)
    image_columns: list[str] = field(default_factory=list)  # manifest columns stacked as channels

    def split(self, name: str) -> list[Item]:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
