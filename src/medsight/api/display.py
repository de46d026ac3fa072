"""Small notebook views of results: an embedded PNG (heatmap, mask or boxes) and a table."""

from __future__ import annotations

import base64
import html as html_lib
import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from medsight.inference.overlay import DISPLAY_SIZE, mask_rgba_png, overlay_png, png_bytes, to_display


def heatmap_png(image: np.ndarray, heat: np.ndarray | None) -> bytes:
    """The model-space image and, with a heatmap, the image with it blended on top."""
    return overlay_png(image, heat if heat is not None else np.zeros(image.shape[1:], np.float32))


def mask_png(image: np.ndarray, mask: np.ndarray) -> bytes:
    """The source image (for a volume, its slice with most foreground) with the mask drawn over."""
    if mask.ndim == 3:
        z = int((mask > 0).reshape(mask.shape[0], -1).sum(1).argmax())
        image, mask = image[:, z], mask[z]
    base = _upscaled(Image.fromarray((to_display(image) * 255).astype(np.uint8)).convert("RGBA"))
    layer = Image.open(io.BytesIO(mask_rgba_png(mask, alpha=0.5))).resize(base.size, Image.NEAREST)
    return png_bytes(Image.alpha_composite(base, layer).convert("RGB"))


def boxes_png(image: np.ndarray, boxes: np.ndarray, labels: Sequence[str]) -> bytes:
    """An 8-bit ``(3, rows, cols)`` image with its boxes and their class names."""
    original = Image.fromarray(np.moveaxis(np.asarray(image, np.uint8), 0, -1))
    canvas = _upscaled(original)
    scale = canvas.size[0] / original.size[0]
    draw = ImageDraw.Draw(canvas)
    for box, name in zip(np.asarray(boxes, float), labels):
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle((x0, y0, x1, y1), outline="yellow", width=2)
        draw.text((x0 + 2, max(0.0, y0 - 11)), name, fill="yellow")
    return png_bytes(canvas)


def _upscaled(image: Image.Image) -> Image.Image:
    factor = max(1, DISPLAY_SIZE // max(image.size))
    return image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST) if factor > 1 else image


def html(title: str, png: bytes | None, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A titled block: the PNG (at most 512 px wide) beside a small table."""
    esc = html_lib.escape
    img = ""
    if png is not None:
        img = (f'<img style="max-width:512px;margin-right:12px" '
               f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>')
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<div><b>{esc(title)}</b><div style="display:flex;align-items:flex-start">{img}'
            f"<table><tr>{head}</tr>{body}</table></div></div>")
