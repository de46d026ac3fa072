"""A built-in synthetic chest-CT set: slices in HU with or without lung nodules.

Each slice has an air background, a body outline with a fat layer, two lung fields with
vessels (small bright round or elongated structures, the usual false-positive source for
nodule detection), heart, aorta and spine, Gaussian noise and partial-volume blur. Half of
the slices (``nodule_fraction``) carry one to two round nodules of varying size and contrast
inside a lung. Label = nodule present; the nodule mask is kept for segmentation.

Everything is generated from ``(seed, split, index)``, so a sample never depends on how many
others were drawn, and no download is needed.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, gaussian_filter

from medsight.data.types import SPLITS, Item, SplitData
from medsight.io.image import make_image

CLASS_NAMES = ["no nodule", "nodule"]
FIELD_OF_VIEW_MM = 350.0
_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}


def chest_slice(rng: np.random.Generator, size: int = 64, nodule: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """One CT-like slice in HU (float32, size x size) and its nodule mask (uint8)."""
    yy, xx = np.mgrid[-1:1:complex(size), -1:1:complex(size)]
    img = np.full((size, size), -1000.0)

    def ellipse(cx, cy, ax, ay):
        return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0

    bx, by = rng.uniform(0.80, 0.92), rng.uniform(0.62, 0.74)
    body = ellipse(0, 0.05, bx, by)
    img[body] = -100.0 + rng.normal(0, 5)  # subcutaneous fat
    img[ellipse(0, 0.05, bx - 0.07, by - 0.07)] = 40.0  # muscle and soft tissue
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        cx = side * rng.uniform(0.34, 0.42)
        lung = ellipse(cx, rng.uniform(-0.06, 0.02), rng.uniform(0.22, 0.28), rng.uniform(0.40, 0.50))
        lungs |= lung
    img[lungs] = rng.uniform(-880, -820)
    img[ellipse(rng.uniform(0.02, 0.12), 0.22, 0.22, 0.18)] = 45.0  # heart
    img[ellipse(0.12, 0.38, 0.06, 0.06)] = 50.0  # descending aorta
    img[ellipse(0.0, 0.60, 0.10, 0.09)] = 700.0  # vertebral body

    inner_lung = binary_erosion(lungs, iterations=max(2, size // 16))
    candidates = np.argwhere(inner_lung)
    px = 2.0 / size  # one pixel in normalised units
    for _ in range(rng.integers(8, 16)):  # vessels: thin, some elongated
        y, x = candidates[rng.integers(len(candidates))]
        r = rng.uniform(0.6, 1.3) * px * size / 64
        stretch = rng.uniform(1.0, 3.0)
        angle = rng.uniform(0, np.pi)
        dx, dy = xx - xx[y, x], yy - yy[y, x]
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        img[((u / (r * stretch)) ** 2 + (v / r) ** 2 <= 1) & lungs] = rng.uniform(-150, 30)

    mask = np.zeros((size, size), dtype=np.uint8)
    if nodule:
        for _ in range(1 if rng.random() < 0.8 else 2):
            y, x = candidates[rng.integers(len(candidates))]
            r = rng.uniform(2.0, 4.5) * px * size / 64
            blob = (xx - xx[y, x]) ** 2 + (yy - yy[y, x]) ** 2 <= r**2
            img[blob] = rng.uniform(-350, 60)
            mask[blob] = 1

    img = gaussian_filter(img, sigma=0.6)  # partial-volume blur
    img += rng.normal(0, rng.uniform(15, 35), img.shape)
    return img.astype(np.float32), mask


def synthetic_sample(seed: int, split: str, index: int, size: int = 64,
                     nodule_fraction: float = 0.5) -> Item:
    """One deterministic item with ``image`` (HU), ``mask`` and ``label``."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
    label = int(rng.random() < nodule_fraction)
    hu, mask = chest_slice(rng, size, nodule=bool(label))
    spacing = (FIELD_OF_VIEW_MM / size,) * 2
    meta = {"modality": "CT", "format": "synthetic", "source": f"synthetic:{split}:{index}"}
    return {
        "image": make_image(hu[None], spacing=spacing, **meta),
        "mask": make_image(mask[None], spacing=spacing, **meta),
        "label": label,
        "patient_id": f"synth-{split}-{index:05d}",
        "id": f"synthetic-{split}-{index:05d}",
    }


def synthetic_dataset(n_train: int = 600, n_val: int = 150, n_test: int = 200, size: int = 64,
                      nodule_fraction: float = 0.5, seed: int = 0) -> SplitData:
    """The synthetic nodule set; each split drawn independently, so no patient is shared."""
    counts = {"train": n_train, "val": n_val, "test": n_test}
    items = {s: [synthetic_sample(seed, s, i, size, nodule_fraction) for i in range(n)]
             for s, n in counts.items()}
    return SplitData(**items, class_names=list(CLASS_NAMES))
