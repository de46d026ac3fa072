"""The JSON pieces of a prediction that a viewer draws: image pixels, heatmap and mask layers, lesions.

Layers are transparent RGBA PNGs (base64) that cover the whole image; a viewer stretches them
over the image it shows (preprocessing resamples the whole field of view, so they line up).
The image itself is sent as raw pixel values so the viewer can window/level CT in HU.
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from medsight.inference.overlay import heat_rgba_png, mask_rgba_png
from medsight.transforms.intensity import WINDOW_PRESETS

MAX_DISPLAY_SIZE = 512
LESION_KEYS = ("centroid_mm", "volume_mm3", "area_mm2", "diameter_mm", "probability")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def display_image(image: np.ndarray, modality: str | None) -> dict[str, Any]:
    """A 2D ``(C, H, W)`` image as raw pixels for the viewer (longest side at most 512).

    Grey images keep their modality values (int16 when they are integers that fit, else
    float32); colour images become interleaved RGB bytes.
    """
    image = _shrink(np.asarray(image, np.float32))
    channels, height, width = image.shape
    if channels >= 3:
        rgb = image[:3]
        if rgb.min() < 0 or rgb.max() > 255:
            rgb = (rgb - rgb.min()) / max(float(rgb.max() - rgb.min()), 1e-12) * 255
        data, dtype, channels = np.moveaxis(rgb, 0, -1).round().astype(np.uint8), "uint8", 3
    else:
        grey = image[0]
        integral = np.array_equal(grey, np.round(grey)) and grey.min() >= -32768 and grey.max() <= 32767
        data, dtype, channels = (grey.astype("<i2"), "int16", 1) if integral else (grey.astype("<f4"), "float32", 1)
    low, high = np.percentile(image[:channels], [0.5, 99.5])
    payload = {
        "width": width, "height": height, "channels": channels, "dtype": dtype,
        "data": b64(np.ascontiguousarray(data).tobytes()),
        "min": float(image.min()), "max": float(image.max()),
        "window": {"level": float((low + high) / 2), "width": float(max(high - low, 1e-3))},
        "modality": modality or "OT",
    }
    if (modality or "").upper() == "CT":
        payload["presets"] = {name: {"level": lvl, "width": wid} for name, (lvl, wid) in WINDOW_PRESETS.items()}
    return payload


def heatmap_layer(heat: np.ndarray, method: str) -> dict[str, Any]:
    """A 2D heatmap in [0, 1] as a transparent jet-coloured layer."""
    return {"png": b64(heat_rgba_png(heat)), "width": int(heat.shape[1]), "height": int(heat.shape[0]),
            "method": method}


def mask_layer(labels: np.ndarray, label_names: Sequence[str] = ("lesion",)) -> dict[str, Any]:
    """A 2D label map (0 background, k = ``label_names[k-1]``) as a coloured transparent layer."""
    labels = np.asarray(labels)
    return {"png": b64(mask_rgba_png(labels)), "width": int(labels.shape[1]), "height": int(labels.shape[0]),
            "labels": {str(k): name for k, name in enumerate(label_names, start=1)}}


def lesion_rows(lesions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A lesion table as JSON rows: ``id`` plus centroid (mm), volume or area, diameter, probability."""
    rows = []
    for i, lesion in enumerate(lesions, start=1):
        row: dict[str, Any] = {"id": int(lesion.get("id", i))}
        for key in LESION_KEYS:
            value = lesion.get(key)
            if value is None:
                continue
            row[key] = [round(float(v), 2) for v in value] if key == "centroid_mm" else round(float(value), 4)
        rows.append(row)
    return rows


def _shrink(image: np.ndarray) -> np.ndarray:
    """Area-average down so the longest side is at most MAX_DISPLAY_SIZE (a viewer needs no more)."""
    height, width = image.shape[1:]
    scale = MAX_DISPLAY_SIZE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=size, mode="area")[0].numpy()
