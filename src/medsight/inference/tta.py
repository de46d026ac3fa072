"""Test-time augmentation for classifiers: the same images seen in a few label-preserving views.

The views are the identity, the flips along the axes the run trained with
(``transforms.augment.flip``; every spatial axis when none were configured), every combination
of those flips, and in 2D rotations by +/-10 degrees (skipped in 3D, where a small rotation of
a volume rarely helps and costs a resampling of every voxel). Each view transforms a whole
batch at once as tensor operations (flips: ``torch.flip``; rotations: MONAI ``Rotate`` over
the batch folded into channels, edge-padded as in training), so the engine, PyTorch or ONNX
Runtime, sees ordinary batches. Callers average ``softmax`` over the views; the spread between
views feeds the uncertainty (:mod:`medsight.inference.uncertainty`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from monai.transforms import Rotate

from medsight.errors import ConfigError
from medsight.runtime.engine import BATCH_SIZE, Engine, run_batches
from medsight.transforms.fusion_batch import FusionBatch

ROTATION_DEGREES = 10.0


@dataclass(frozen=True)
class View:
    """One test-time view: flips along spatial axes (0-based), then an in-plane rotation."""

    flips: tuple[int, ...] = ()
    degrees: float = 0.0

    @property
    def name(self) -> str:
        parts = [f"flip{'+'.join(map(str, self.flips))}"] if self.flips else []
        parts += [f"rotate{self.degrees:+g}"] if self.degrees else []
        return "-".join(parts) or "identity"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The view of a batch ``(N, C, *spatial)``."""
        x = images.flip([a + 2 for a in self.flips]) if self.flips else images
        return _rotate(x, self.degrees) if self.degrees else x


IDENTITY = View()


def tta_views(spatial_dims: int, flip_axes: Sequence[int] = ()) -> list[View]:
    """The identity first, then every non-empty combination of flips, then (2D) the rotations."""
    axes = sorted(set(flip_axes)) or list(range(spatial_dims))
    if any(not 0 <= a < spatial_dims for a in axes):
        raise ConfigError(f"flip axes {axes} out of range for {spatial_dims}D images")
    flips = [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]
    views = [IDENTITY] + [View(f) for f in flips]
    if spatial_dims == 2:
        views += [View(degrees=ROTATION_DEGREES), View(degrees=-ROTATION_DEGREES)]
    return views


def view_logits(engine: Engine, images: torch.Tensor, views: Sequence[View] = (IDENTITY,),
                batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Logits ``(V, N, K)`` of every view of ``images`` ``(N, C, *spatial)``."""
    if not views:
        raise ConfigError("test-time augmentation needs at least one view")
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        out.append(torch.stack([run_batches(engine, _on_images(view, batch), batch_size) for view in views]))
    if not out:
        raise ConfigError("no images to predict")
    return torch.cat(out, dim=1)


def _on_images(view: View, batch):
    """The view of an image batch, or of a ``FusionBatch``'s images (its table rows unchanged)."""
    if isinstance(batch, FusionBatch):
        return FusionBatch(view(batch.images.float()), batch.table)
    return view(batch.float())


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every 2D image of a batch by the same angle about its centre (one resampling call)."""
    if x.ndim != 4:
        raise ConfigError("test-time rotations are for 2D images")
    n, c = x.shape[:2]
    rotate = Rotate(math.radians(degrees), keep_size=True, mode="bilinear", padding_mode="border")
    out = rotate(x.reshape(n * c, *x.shape[2:]))
    out = out.as_tensor() if hasattr(out, "as_tensor") else out  # a plain tensor, not a MetaTensor
    return out.reshape(x.shape).contiguous()
