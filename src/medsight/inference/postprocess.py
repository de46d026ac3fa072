"""Segmentation post-processing chosen on validation (nnU-Net's rule): keep only the largest
connected component of a class when that raised the class's mean validation Dice.

``RUN/postprocessing.json`` (written at the end of training by
:func:`medsight.evaluation.postprocessing.choose_postprocessing`)::

    largest_component    class names whose smaller components are removed
    val_dice             per class: mean validation Dice without and with it
    checkpoint_sha256    the checkpoint it was chosen for (ignored once stale)
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from medsight.inference.engine import file_sha256
from medsight.runtime.checkpoint import BEST
from medsight.runtime.run_folder import POSTPROCESSING_FILE, checkpoint_path


def largest_component_classes(run_dir: str | Path, class_names: Sequence[str]) -> list[int]:
    """Class indices to keep the largest component of: none without a current choice."""
    path = Path(run_dir) / POSTPROCESSING_FILE
    if not path.is_file():
        return []
    checkpoint = checkpoint_path(Path(run_dir), BEST)
    stamp = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else 0
    return list(_read(str(path), path.stat().st_mtime_ns, str(checkpoint), stamp, tuple(class_names)))


@lru_cache(maxsize=16)  # once per file version, not once per segmented image
def _read(path_str: str, _mtime: int, checkpoint_str: str, _stamp: int, names: tuple[str, ...]) -> tuple[int, ...]:
    path, checkpoint = Path(path_str), Path(checkpoint_str)
    try:
        chosen = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ()
    if checkpoint.is_file() and chosen.get("checkpoint_sha256") not in (None, file_sha256(checkpoint)):
        return ()  # chosen for other weights
    return tuple(names.index(n) for n in chosen.get("largest_component", []) if n in names)


def keep_largest(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """``labels`` ``(1, *S)`` with all but the largest component of each of ``classes`` set to 0.

    Components connect through faces, edges and corners, as lesions do (``lesions.py``).
    (MONAI's KeepLargestConnectedComponent does the same but needs scikit-image on a CPU.)"""
    if not classes:
        return labels
    out = labels.clone()
    array = labels[0].cpu().numpy()
    for k in classes:
        components, n = ndimage.label(array == k, structure=np.ones((3,) * array.ndim, dtype=bool))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            smaller = (components > 0) & (components != int(np.argmax(sizes)) + 1)
            out[0][torch.from_numpy(smaller)] = 0
    return out
