"""Several images of one case as the channels of one image (MR sequences, image pairs).

Each further image is brought onto the first image's grid, then all are concatenated along
the channel axis in a fixed order; the normal preprocessing then runs on the stack.

- Same spatial shape and affine (to 1e-3 mm): stacked as they are.
- 3D volumes on other grids (a T2 at another resolution or field of view): resampled to the
  first image's grid by their affines (MONAI ``ResampleToMatch``, trilinear, zeros outside).
  Their fields of view must overlap by at least half of the smaller one; less means a
  different position, patient or frame of reference, which resampling would turn into noise.
- 2D images must share the first image's size: a photograph or a single slice carries no
  geometry that relates two different pixel grids (resize such pairs before training).
- DICOM images of one case must come from one study (StudyInstanceUID), the check that
  catches a row pointing at another patient's series (patient IDs are never read).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from medsight.errors import InputFileError

AFFINE_TOLERANCE_MM = 1e-3
MIN_OVERLAP = 0.5  # of the smaller field of view


def stack_on_grid(images: Sequence[MetaTensor], sources: Sequence[str]) -> MetaTensor:
    """``images[0]`` with every further image resampled onto its grid and appended as channels.

    Raises :class:`InputFileError` naming the image that cannot be put on the first one's grid.
    """
    first, on_grid = images[0], [images[0]]
    for image, source in zip(images[1:], sources[1:]):
        on_grid.append(_onto(first, image, source, sources[0]))
    stacked = torch.cat([torch.as_tensor(x) for x in on_grid], dim=0)
    meta = {k: v for k, v in first.meta.items() if k != "affine"}  # the affine is passed apart
    return MetaTensor(stacked, affine=first.affine, meta=meta)


def _onto(first: MetaTensor, image: MetaTensor, source: str, first_source: str) -> MetaTensor:
    def fail(problem: str) -> InputFileError:
        return InputFileError(source, f"cannot be stacked with {first_source}: {problem}")

    if image.ndim != first.ndim:
        raise fail(f"it is {image.ndim - 1}D and {first_source} is {first.ndim - 1}D")
    study, first_study = image.meta.get("StudyInstanceUID"), first.meta.get("StudyInstanceUID")
    if study and first_study and study != first_study:
        raise fail("it belongs to another study (StudyInstanceUID differs)")
    shape, first_shape = tuple(image.shape[1:]), tuple(first.shape[1:])
    same_affine = float((image.affine.double() - first.affine.double()).abs().max()) <= AFFINE_TOLERANCE_MM
    if shape == first_shape and (same_affine or image.ndim == 3):  # 2D: the pixel grid is what counts
        return image
    if image.ndim == 3:
        raise fail(f"its size {_size(shape)} differs from {_size(first_shape)}; 2D images of one case "
                   "must share a pixel grid (resize them first)")
    overlap = _overlap(first, image)
    if overlap < MIN_OVERLAP:
        raise fail(f"their fields of view overlap by {overlap:.0%} (different position, patient or "
                   "frame of reference); it cannot be resampled to that grid")
    from monai.transforms import ResampleToMatch

    return ResampleToMatch(mode="bilinear", padding_mode="zeros")(image, img_dst=first)


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _overlap(a: MetaTensor, b: MetaTensor) -> float:
    """Shared volume of the two grids' world bounding boxes over the smaller box's volume."""
    lo_a, hi_a = _world_box(a)
    lo_b, hi_b = _world_box(b)
    shared = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None).prod()
    smaller = min((hi_a - lo_a).prod(), (hi_b - lo_b).prod())
    return float(shared / smaller) if smaller > 0 else 0.0


def _world_box(image: MetaTensor) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds, in patient space, of the voxels' extents (index -0.5 .. n-0.5)."""
    shape = np.asarray(image.shape[1:], dtype=float)
    affine = image.affine.detach().cpu().double().numpy()
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape], indexing="ij")).reshape(len(shape), -1)
    world = affine[:3, :len(shape)] @ corners + affine[:3, 3:4]
    return world.min(1), world.max(1)
