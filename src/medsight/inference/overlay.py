"""Render an image with its heatmap: the image and the overlay side by side, as PNG."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

DISPLAY_SIZE = 256


def to_display(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) float image as (H, W, 3) floats in [0, 1], min-max stretched."""
    img = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    img = np.moveaxis(img, 0, -1).astype(np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)


def pick_slice(image: np.ndarray, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For 3D input, the slice (first spatial axis) where the heatmap is strongest."""
    if heat.ndim == 2:
        return image, heat
    z = int(heat.reshape(heat.shape[0], -1).sum(1).argmax())
    return image[:, z], heat[z]


def overlay_png(image: np.ndarray, heat: np.ndarray, caption: str = "", alpha: float = 0.45) -> bytes:
    """PNG bytes: the image, then the image with the heatmap (jet colour map) blended on top."""
    image, heat = pick_slice(image, heat)
    base = to_display(image)
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    weight = alpha * np.clip(heat, 0, 1)[..., None] ** 0.5  # cold areas stay mostly visible
    blended = base * (1 - weight) + colour * weight
    panels = [Image.fromarray((p * 255).astype(np.uint8)) for p in (base, blended)]
    scale = max(1, DISPLAY_SIZE // max(base.shape[:2]))
    size = (base.shape[1] * scale, base.shape[0] * scale)
    panels = [p.resize(size, Image.BILINEAR) for p in panels]
    bar = 18 if caption else 0
    canvas = Image.new("RGB", (size[0] * 2 + 4, size[1] + bar), "white")
    for i, p in enumerate(panels):
        canvas.paste(p, (i * (size[0] + 4), bar))
    if caption:
        ImageDraw.Draw(canvas).text((4, 3), caption, fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
