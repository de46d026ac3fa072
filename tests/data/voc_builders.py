"""Tiny Pascal VOC folders for tests: drawn squares and discs with their boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

CLASSES = ("square", "disc")


def voc_xml(filename: str, width: int, height: int, objects: Sequence[tuple[str, Sequence[float], int]]) -> str:
    """A VOC annotation; ``objects`` are ``(name, (xmin, ymin, xmax, ymax), difficult)``."""
    parts = [f"<annotation><filename>{filename}</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, box, difficult in objects:
        coords = "".join(f"<{k}>{v:g}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>")
    return "".join(parts) + "</annotation>\n"


def draw_shapes(rng: np.random.Generator, size: int, n_objects: int) -> tuple[np.ndarray, list[tuple[str, list[float]]]]:
    """An RGB image with non-overlapping bright squares and discs on a noisy dark background."""
    image = rng.normal(40, 8, (size, size, 3)).clip(0, 255)
    objects: list[tuple[str, list[float]]] = []
    yy, xx = np.mgrid[:size, :size]
    for _ in range(50):
        if len(objects) == n_objects:
            break
        side = int(rng.integers(size // 5, size // 3))
        x0, y0 = (int(v) for v in rng.integers(1, size - side - 1, 2))
        box = [x0, y0, x0 + side, y0 + side]
        if any(x0 < b[2] + 2 and b[0] < x0 + side + 2 and y0 < b[3] + 2 and b[1] < y0 + side + 2 for _, b in objects):
            continue
        name = CLASSES[len(objects) % 2] if n_objects > 1 else CLASSES[int(rng.integers(2))]
        if name == "square":
            image[y0:y0 + side, x0:x0 + side] = (220, 80, 80)
        else:
            r = side / 2
            inside = (xx + 0.5 - x0 - r) ** 2 + (yy + 0.5 - y0 - r) ** 2 <= r * r
            image[inside] = (80, 80, 220)
        objects.append((name, [float(v) for v in box]))
    return image.astype(np.uint8), objects


def write_voc(root: Path, splits: dict[str, int], size: int = 64, seed: int = 0, per_image: int = 2) -> Path:
    """A VOC folder with ``splits[name]`` images per split and the official-style lists."""
    rng = np.random.default_rng(seed)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in splits.items():
        ids = []
        for _ in range(n):
            image_id = f"img_{k:04d}"
            image, objects = draw_shapes(rng, size, per_image)
            Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.png")
            (root / "Annotations" / f"{image_id}.xml").write_text(
                voc_xml(f"{image_id}.png", size, size, [(name, box, 0) for name, box in objects]))
            ids.append(image_id)
            k += 1
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root
