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


def heat_colours(heat: np.ndarray, alpha: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """Jet colours (H, W, 3) and blending weights (H, W, 1) in [0, 1] for a heatmap."""
    heat = np.clip(np.nan_to_num(heat), 0, 1)
    # Square root: cold areas stay mostly see-through, warm ones show clearly.
    return colormaps["jet"](heat)[..., :3], alpha * heat[..., None] ** 0.5


def blend(base: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An (H, W, 3) display image in [0, 1] with the heatmap (same H, W) blended on top."""
    colour, weight = heat_colours(heat, alpha)
    return base * (1 - weight) + colour * weight


def heat_rgba_png(heat: np.ndarray, alpha: float = 0.8) -> bytes:
    """A 2D heatmap as a transparent RGBA PNG layer, for a viewer to draw over the image."""
    colour, weight = heat_colours(heat, alpha)
    rgba = np.concatenate([colour, weight], axis=-1)
    return png_bytes(Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA"))


def mask_rgba_png(labels: np.ndarray, alpha: float = 0.8) -> bytes:
    """A 2D label map (0 = background) as an RGBA PNG layer, one colour per label."""
    labels = np.asarray(labels).astype(np.int64)
    palette = (np.asarray(colormaps["tab10"].colors) * 255).astype(np.uint8)
    rgba = np.zeros((*labels.shape, 4), np.uint8)
    inside = labels > 0
    rgba[inside, :3] = palette[(labels[inside] - 1) % len(palette)]
    rgba[inside, 3] = int(round(alpha * 255))
    return png_bytes(Image.fromarray(rgba, "RGBA"))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def overlay_png(image: np.ndarray, heat: np.ndarray, caption: str = "", alpha: float = 0.45) -> bytes:
    """PNG bytes: the image, then the image with the heatmap (jet colour map) blended on top."""
    image, heat = pick_slice(image, heat)
    base = to_display(image)
    blended = blend(base, heat, alpha)
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
    return png_bytes(canvas)


def matching_slice(image: np.ndarray, heat: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The 2D slice of an original ``(C, *spatial)`` image to show with a model-space heatmap.

    2D images are returned as they are. For a volume, the slice is the one where the heatmap
    is strongest, mapped from the model's depth to the image's (preprocessing resamples the
    whole extent, so relative positions agree), or the middle slice without a heatmap.
    """
    if image.ndim == 3:
        return image, heat
    z_image, z_heat = slice_indices(image.shape[1], heat)
    return image[:, z_image], None if heat is None else heat[z_heat]


def slice_indices(depth: int, heat: np.ndarray | None) -> tuple[int, int]:
    """(image slice, heatmap slice) of :func:`matching_slice` for a volume ``depth`` slices deep."""
    if heat is None:
        return depth // 2, 0
    z = int(heat.reshape(heat.shape[0], -1).sum(1).argmax())
    return min(depth - 1, int((z + 0.5) * depth / heat.shape[0])), z


def heat_on_image(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) floats: a 2D ``(C, H, W)`` image with a heatmap of any size stretched over it."""
    base = to_display(image)
    size = (base.shape[1], base.shape[0])
    heat_full = np.asarray(Image.fromarray(np.asarray(heat, np.float32), "F").resize(size, Image.BILINEAR))
    return blend(base, heat_full, alpha)
