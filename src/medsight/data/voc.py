"""Pascal VOC box annotations and data sets (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``).

Boxes are pixel ``[xmin, ymin, xmax, ymax]`` as float32, x the column and y the row, taken as
written in the XML (continuous coordinates: no VOC-devkit ``+1``). Degenerate boxes (zero or
negative width or height) are dropped and counted; every other problem with an annotation is
an :class:`~medsight.errors.InputFileError` naming the XML file, in one line.

Splits come from ``ImageSets/Main/{train,val,test}.txt`` when present (the official lists),
otherwise from a seeded random split of the image IDs.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medsight.data.splits import patient_split
from medsight.data.types import SPLITS
from medsight.errors import ConfigError, InputFileError
from medsight.io.read import read_image
from medsight.io.validate import one_line

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VOCAnnotation:
    """One image's boxes as written in its XML file."""

    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    names: list[str]
    difficult: np.ndarray  # (N,) bool; VOC evaluation neither rewards nor penalises these
    size: tuple[int, int] | None  # (width, height) from <size>, if given
    dropped: int = 0  # degenerate boxes removed


@dataclass
class DetectionItem:
    id: str
    image: Path
    annotation: Path
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    labels: np.ndarray  # (N,) int64 indices into the class names
    difficult: np.ndarray  # (N,) bool
    size: tuple[int, int] | None = None  # (width, height) the annotation declares


@dataclass
class DetectionData:
    """Items per split and the class vocabulary of a box-annotated data set."""

    splits: dict[str, list[DetectionItem]]
    class_names: list[str]
    dropped_boxes: int = 0
    split_source: str = "ImageSets/Main"
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[DetectionItem]:
        if name not in self.splits:
            raise ConfigError(f"unknown split {name!r}; choose one of {', '.join(self.splits)}")
        return self.splits[name]


def read_voc_annotation(path: str | Path) -> VOCAnnotation:
    """Parse one VOC XML file; a malformed file raises one line naming it."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputFileError(path, "annotation file not found") from None
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not valid XML ({one_line(exc)})") from None
    if root.tag != "annotation":
        raise InputFileError(path, f"not a Pascal VOC annotation (root element <{root.tag}>)")
    boxes, names, difficult, dropped = [], [], [], 0
    for k, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise InputFileError(path, f"object {k} has no <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise InputFileError(path, f"object {k} ({name}) has no <bndbox>")
        box = [_number(bndbox, tag, path, f"object {k} ({name})") for tag in COORDS]
        if box[2] <= box[0] or box[3] <= box[1]:
            dropped += 1
            continue
        boxes.append(box)
        names.append(name)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return VOCAnnotation(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), names,
                         np.asarray(difficult, dtype=bool), _size(root, path), dropped)


def voc_dataset(root: str | Path, class_names: Sequence[str] | None = None, seed: int = 0,
                fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> DetectionData:
    """Every split of a VOC-layout folder, with labels as indices into ``class_names``.

    ``class_names``: the classes in this order (an object of another class is an error);
    ``None``: the sorted names found in the annotations.
    """
    root = Path(root)
    for sub in ("Annotations", "JPEGImages"):
        if not (root / sub).is_dir():
            raise InputFileError(root, f"not a Pascal VOC folder (no {sub}/)")
    ids_by_split, source = _split_ids(root, seed, fractions)
    annotations = {i: read_voc_annotation(root / "Annotations" / f"{i}.xml")
                   for ids in ids_by_split.values() for i in ids}
    found = sorted({n for a in annotations.values() for n in a.names})
    names = list(class_names) if class_names is not None else found
    index = {n: k for k, n in enumerate(names)}
    splits: dict[str, list[DetectionItem]] = {}
    for split, ids in ids_by_split.items():
        items = []
        for i in ids:
            ann, xml = annotations[i], root / "Annotations" / f"{i}.xml"
            unknown = sorted(set(ann.names) - set(index))
            if unknown:
                raise InputFileError(xml, f"class {unknown[0]!r} is not one of detection.classes {names}")
            labels = np.asarray([index[n] for n in ann.names], dtype=np.int64)
            items.append(DetectionItem(i, _image_file(root, i), xml, ann.boxes, labels, ann.difficult, ann.size))
        splits[split] = items
    dropped = sum(a.dropped for a in annotations.values())
    if dropped:
        log.info("%s: dropped %d degenerate boxes (zero width or height)", root, dropped)
    return DetectionData(splits, names, dropped, source)


def load_detection_image(item: DetectionItem) -> torch.Tensor:
    """The item's image as uint8 ``(3, rows, cols)`` (grey is repeated to three channels).

    The annotation's ``<size>`` must match the image: boxes drawn on another picture are useless.
    """
    image = read_image(item.image)
    if image.ndim == 3:
        rows, cols = image.shape[1:]
        if item.size is not None and item.size != (cols, rows):
            raise InputFileError(item.annotation, f"<size> {item.size[0]}x{item.size[1]} does not match the image "
                                                  f"{item.image} ({cols}x{rows})")
    return detection_pixels(image.as_tensor(), item.image)


def detection_pixels(image: torch.Tensor, source: str | Path) -> torch.Tensor:
    """An image as read (channel first) as the uint8 ``(3, rows, cols)`` a detector reads, or one
    error line naming ``source`` (not 2D, not grey or RGB, not 8-bit)."""
    if image.ndim != 3:
        raise InputFileError(source, f"expected a 2D image for box detection, got shape {tuple(image.shape)}")
    pixels = torch.as_tensor(image)
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1)
    elif pixels.shape[0] != 3:
        raise InputFileError(source, f"{pixels.shape[0]} channels; box detection reads grey or RGB images")
    if float(pixels.max()) > 255 or float(pixels.min()) < 0:
        raise InputFileError(source, "not an 8-bit image; box detection reads 8-bit photographs")
    return pixels.round().clamp(0, 255).to(torch.uint8).contiguous()


def _split_ids(root: Path, seed: int, fractions: Sequence[float]) -> tuple[dict[str, list[str]], str]:
    lists = root / "ImageSets" / "Main"
    if all((lists / f"{s}.txt").is_file() for s in SPLITS):
        ids = {s: [line.split()[0] for line in (lists / f"{s}.txt").read_text().splitlines() if line.strip()]
               for s in SPLITS}
        for split, names in ids.items():
            for i in names:
                if not (root / "Annotations" / f"{i}.xml").is_file():
                    raise InputFileError(lists / f"{split}.txt", f"lists {i!r}, which has no Annotations/{i}.xml")
        return ids, "ImageSets/Main"
    all_ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    if len(all_ids) < 3:
        raise InputFileError(root, f"{len(all_ids)} annotations; need at least 3 to split")
    names = patient_split(all_ids, [0] * len(all_ids), fractions, seed)
    return {s: [i for i, n in zip(all_ids, names) if n == s] for s in SPLITS}, f"random split (seed {seed})"


def _image_file(root: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (suffix, suffix.upper()):
            path = root / "JPEGImages" / f"{image_id}{candidate}"
            if path.is_file():
                return path
    raise InputFileError(root / "Annotations" / f"{image_id}.xml", f"no image JPEGImages/{image_id}.jpg (or .png)")


def _number(node: ET.Element, tag: str, path: Path, what: str) -> float:
    text = node.findtext(tag)
    if text is None:
        raise InputFileError(path, f"{what}: <bndbox> has no <{tag}>")
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(path, f"{what}: <{tag}> is {text.strip()!r}, not a number") from None
    if not np.isfinite(value):
        raise InputFileError(path, f"{what}: <{tag}> is {text.strip()!r}")
    return value


def _size(root: ET.Element, path: Path) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None or size.findtext("width") is None or size.findtext("height") is None:
        return None
    try:
        return int(float(size.findtext("width"))), int(float(size.findtext("height")))
    except ValueError:
        raise InputFileError(path, "<size> width/height are not numbers") from None
