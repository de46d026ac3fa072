"""A synthetic case table whose label needs the image *and* a clinical column.

Each case is a grey PNG with or without a bright blob, and a row with ``age`` (uniform 20-90),
``sex`` and ``crp`` (both irrelevant; crp missing in a fifth of the rows). The label is
``blob XOR (age > 55)`` (or AND): by construction the image alone and the table alone each
carry no information (XOR) or only half of it (AND), so only a fused model can do well.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

AGE_CUTOFF = 55.0


def write_fusion_set(folder: Path, n: int = 480, size: int = 24, seed: int = 0, rule: str = "xor",
                     fractions: tuple[float, float] = (0.6, 0.2)) -> Path:
    """PNG files and ``manifest.csv`` (path,label,patient_id,split,age,sex,crp) in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n):
        blob = bool(rng.random() < 0.5)
        age = float(rng.uniform(20, 90))
        pixels = rng.normal(70, 12, (size, size))
        if blob:
            cy, cx = rng.integers(5, size - 5, 2)
            pixels += 110 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0 ** 2))
        name = f"case{i:04d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name)
        old = age > AGE_CUTOFF
        label = (blob != old) if rule == "xor" else (blob and old)
        u = i / n
        split = "train" if u < fractions[0] else "val" if u < sum(fractions) else "test"
        crp = "" if rng.random() < 0.2 else f"{rng.gamma(2, 5):.1f}"
        rows.append([name, int(label), f"p{i}", split, f"{age:.1f}", rng.choice(["F", "M"]), crp])
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "patient_id", "split", "age", "sex", "crp"])
        writer.writerows(rows)
    return manifest
