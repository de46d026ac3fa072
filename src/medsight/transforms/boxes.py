"""Images with boxes: resizing, and random flips, zoom and colour changes that move the boxes too.

Boxes are pixel ``[xmin, ymin, xmax, ymax]`` (x the column) of images ``(C, rows, cols)``.
The random part is MONAI's detection transforms (``RandFlipBoxd``, ``RandZoomBoxd``,
``ClipBoxToImaged``). Those index box coordinates by image axis (x = first spatial axis, the
ITK convention), so :class:`BoxAugment` hands them the image transposed to ``(C, cols, rows)``
and transposes it back; callers never see the swap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.apps.detection.transforms.dictionary import ClipBoxToImaged, RandFlipBoxd, RandZoomBoxd
from monai.transforms import Compose, RandScaleIntensityd, RandShiftIntensityd

IMAGE, BOXES, LABELS = "image", "boxes", "labels"


def resize_with_boxes(image: torch.Tensor, boxes: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``(C, rows, cols)`` by ``scale`` (antialiased) and scale the boxes to the new pixels."""
    rows, cols = image.shape[-2:]
    new_rows, new_cols = max(1, round(rows * scale)), max(1, round(cols * scale))
    if (new_rows, new_cols) == (rows, cols):
        return image.float(), boxes.float()
    resized = F.interpolate(image[None].float(), size=(new_rows, new_cols), mode="bilinear",
                            antialias=True, align_corners=False)[0]
    factors = torch.tensor([new_cols / cols, new_rows / rows] * 2, dtype=torch.float32)
    return resized, boxes.float() * factors


def normalise(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A float image with each channel shifted by ``mean`` and divided by ``std``."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (image.float() - mean_t) / std_t


class BoxAugment:
    """Random flips (both axes), isotropic zoom and per-channel intensity scale/shift, boxes following.

    Zoom keeps the image size: zooming in crops (boxes are clipped to the image, and those left
    empty are removed with their labels), zooming out pads with zeros, the mean of a normalised
    image. Call with a float image and its boxes and labels; :meth:`set_random_state` makes
    the sequence repeatable.
    """

    def __init__(self, flip: bool = True, zoom: float = 0.0, intensity: float = 0.0, prob: float = 0.5):
        keys = dict(image_keys=IMAGE, box_keys=BOXES, box_ref_image_keys=IMAGE)
        steps: list = []
        if flip:
            steps += [RandFlipBoxd(prob=0.5, spatial_axis=axis, **keys) for axis in (0, 1)]
        if zoom:
            steps += [RandZoomBoxd(prob=prob, min_zoom=1 - zoom, max_zoom=1 + zoom, mode="bilinear",
                                   padding_mode="constant", keep_size=True, **keys),
                      ClipBoxToImaged(box_keys=BOXES, label_keys=LABELS, box_ref_image_keys=IMAGE,
                                      remove_empty=True)]
        if intensity:
            steps += [RandScaleIntensityd(IMAGE, factors=intensity, prob=prob, channel_wise=True),
                      RandShiftIntensityd(IMAGE, offsets=intensity, prob=prob, channel_wise=True)]
        self.transform = Compose(steps) if steps else None

    def set_random_state(self, seed: int) -> "BoxAugment":
        if self.transform is not None:
            self.transform.set_random_state(seed=seed % 2**32)
        return self

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.transform is None:
            return image, boxes, labels
        out = self.transform({IMAGE: image.transpose(-1, -2), BOXES: boxes.numpy(), LABELS: labels.numpy()})
        image = torch.as_tensor(out[IMAGE]).transpose(-1, -2).contiguous()
        return (image.as_subclass(torch.Tensor), _as_tensor(out[BOXES], torch.float32).reshape(-1, 4),
                _as_tensor(out[LABELS], torch.int64).reshape(-1))


def _as_tensor(value, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).to(dtype)
