"""The one image type: a MONAI ``MetaTensor``, channel first, with its geometry in ``.meta``.

Every reader returns, and every writer accepts, a ``MetaTensor`` shaped ``(C, *spatial)``
(2 or 3 spatial axes) of dtype float32, whose ``meta`` holds at least:

- ``spacing``: tuple of floats, one per spatial axis, in mm (1.0 where unknown);
- ``affine``: 4x4 float64 ``torch.Tensor`` mapping voxel indices to patient space (MONAI's
  own key, so MONAI spatial transforms keep it up to date);
- ``modality``: e.g. ``"CT"``, ``"MR"``, ``"US"``, ``"OT"`` (unknown);
- ``source``: the file or folder read;
- ``format``: ``"dicom"``, ``"dicom-series"``, ``"nifti"``, ``"raster"`` or ``"npz"``;
- DICOM only: ``StudyInstanceUID``, ``SeriesInstanceUID``, ``SOPInstanceUID`` (a list for a
  series), ``PatientIdentityRemoved`` (``"YES"``/``"NO"``/``""``).

Patient names and IDs are deliberately *not* copied into ``meta``: metadata ends up in logs
and reports, and patient data must not.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor


def make_image(
    array: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | torch.Tensor | None = None,
    **meta: Any,
) -> MetaTensor:
    """Build the medsight image from a channel-first array and its geometry."""
    data = torch.as_tensor(np.ascontiguousarray(array) if isinstance(array, np.ndarray) else array)
    data = data.to(torch.float32)
    n_spatial = data.ndim - 1
    if n_spatial not in (2, 3):
        raise ValueError(f"expected (C, H, W) or (C, D, H, W), got shape {tuple(data.shape)}")
    if spacing is None:
        spacing = (1.0,) * n_spatial
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != n_spatial:
        raise ValueError(f"spacing {spacing} does not match {n_spatial} spatial axes")
    if affine is None:
        affine = np.diag([*spacing, *([1.0] * (3 - n_spatial)), 1.0])
    affine_t = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    meta.setdefault("modality", "OT")
    meta.setdefault("format", "array")
    meta["spacing"] = spacing
    meta["original_channel_dim"] = 0
    return MetaTensor(data, affine=affine_t, meta=meta)


def spacing_of(image: MetaTensor) -> tuple[float, ...]:
    """Voxel spacing in mm, derived from the affine so it stays right after resampling."""
    affine = image.affine.detach().cpu().numpy()
    n_spatial = image.ndim - 1
    return tuple(float(np.linalg.norm(affine[:3, i])) for i in range(n_spatial))
