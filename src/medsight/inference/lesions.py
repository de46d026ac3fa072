"""Lesions from a probability map: connected components with their size, position and diameter.

A lesion is a connected component (full connectivity: 8 neighbours in 2D, 26 in 3D) of
``prob >= threshold``. Every measure goes through the voxel-to-mm ``affine``, so anisotropic
spacing, oblique directions and a 2D image placed in 3D space (MONAI keeps 4x4 affines for 2D
images) are all honoured. Each lesion is a JSON-ready dict:

- ``label``: its value in the label map of :func:`label_lesions` (1 = most probable lesion);
- ``probability`` (max over the lesion) and ``mean_probability``;
- ``centroid_voxel`` (mean voxel index, unweighted) and ``centroid_mm`` (its world position,
  one coordinate per row of the affine: 3 for a 4x4 affine even when the map is 2D);
- ``volume_mm3`` (3D) or ``area_mm2`` (2D), and ``n_voxels``;
- ``diameter_mm``: the longest distance between the centres of two of its voxels (0 for one
  voxel). Exact: large lesions are first reduced to their convex-hull vertices, which hold
  the farthest pair;
- ``bbox_voxel``: ``[start_0, .., start_d-1, stop_0, .., stop_d-1]``, half-open, in MONAI's
  StandardMode order, so ``prob[start_0:stop_0, ...]`` crops the lesion;
- ``class_index``: only when given, the label the map belongs to.

Lesions are sorted by ``probability``, highest first. At most ``max_lesions`` are measured and
returned (the most probable): a poorly trained model can threshold a 512x512x300 CT into a
million specks, and no reader uses more than the first few hundred findings.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

from medsight.errors import MedsightError
from medsight.utils.atomic import write_text

log = logging.getLogger(__name__)
MAX_LESIONS = 1000
# Components up to this many voxels get all-pairs distances; larger ones go through their hull.
_EXACT_LIMIT = 2000
# Bound the distance block (rows x points) held in memory at once.
_BLOCK_ELEMENTS = 2_000_000


def find_lesions(
    prob: Any,
    affine: Any,
    threshold: float = 0.5,
    min_size: float = 0.0,
    class_index: int | None = None,
    max_lesions: int = MAX_LESIONS,
) -> list[dict[str, Any]]:
    """Lesions of a 2D or 3D foreground probability map (no channel axis), most probable first.

    ``affine`` is the (r+1)x(r+1) voxel-to-mm matrix (r >= the map's axes; 3x3 or 4x4 for 2D,
    4x4 for 3D). Components smaller than ``min_size`` (mm³ in 3D, mm² in 2D) are dropped.
    See the module docstring for the fields of each lesion.
    """
    return label_lesions(prob, affine, threshold, min_size, class_index, max_lesions, want_map=False)[0]


def label_lesions(
    prob: Any,
    affine: Any,
    threshold: float = 0.5,
    min_size: float = 0.0,
    class_index: int | None = None,
    max_lesions: int = MAX_LESIONS,
    want_map: bool = True,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """:func:`find_lesions` plus the lesion label map (int32, lesion ``label`` values, 0 elsewhere;
    None unless ``want_map``).

    The label map gives each lesion its voxels, e.g. for IoU matching in
    :func:`medsight.evaluation.froc.match_lesions` or to save the lesions as an image.
    """
    p = _probability_map(prob)
    linear, offset = _geometry(affine, p.ndim)
    if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
        raise MedsightError(f"lesion threshold must be in (0, 1], got {threshold}")
    if not (math.isfinite(min_size) and min_size >= 0):
        raise MedsightError(f"minimum lesion size must be >= 0 mm, got {min_size}")
    # mm³ (3D) or mm² (2D); rounded to 12 digits so 2 x 2 mm pixels are 4 mm², not 3.9999999999999996,
    # and a size equal to min_size is kept (headers hold far fewer digits than that anyway).
    voxel_size = float(f"{math.sqrt(max(np.linalg.det(linear.T @ linear), 0.0)):.12g}")
    if max_lesions < 1:
        raise MedsightError(f"maximum lesion count must be >= 1, got {max_lesions}")
    components, n = ndimage.label(p >= threshold, structure=np.ones((3,) * p.ndim, dtype=bool))
    size_key = "volume_mm3" if p.ndim == 3 else "area_mm2"
    # size, peak and mean of every component at once, over the thresholded voxels only (a CT is
    # 78 M voxels); Python then visits only the components reported
    inside_any = components > 0
    labels, values = components[inside_any], p[inside_any]
    del inside_any
    sizes = np.bincount(labels, minlength=n + 1)
    keep = np.flatnonzero(sizes[1:] * voxel_size >= min_size) + 1
    peaks = (np.asarray(ndimage.maximum(values, labels, keep), dtype=np.float64).reshape(-1) if len(keep)
             else np.zeros(0))
    means = np.bincount(labels, weights=values, minlength=n + 1)[keep] / np.maximum(sizes[keep], 1)
    del labels, values
    # most probable first; lexsort is stable, so ties keep scan order and the output is deterministic
    order = np.lexsort((-means, -peaks))
    if len(order) > max_lesions:
        log.warning("%d components above probability %g: kept the %d most probable", len(order), threshold,
                    max_lesions)
        order = order[:max_lesions]
    boxes = ndimage.find_objects(components)
    found = []
    for rank in order:
        component = int(keep[rank])
        box = boxes[component - 1]
        inside = components[box] == component
        start = np.array([s.start for s in box])
        centroid = (np.argwhere(inside) + start).mean(axis=0)
        n_voxels = int(sizes[component])
        lesion = {
            "label": len(found) + 1,
            "probability": float(peaks[rank]),
            "mean_probability": float(means[rank]),
            "centroid_voxel": [float(c) for c in centroid],
            "centroid_mm": [float(c) for c in linear @ centroid + offset],
            size_key: n_voxels * voxel_size,
            "n_voxels": n_voxels,
            "diameter_mm": _diameter(inside, start, linear),
            "bbox_voxel": [int(s.start) for s in box] + [int(s.stop) for s in box],
        }
        if class_index is not None:
            lesion["class_index"] = int(class_index)
        found.append((component, lesion))
    if not want_map:
        return [lesion for _, lesion in found], None
    relabel = np.zeros(n + 1, dtype=np.int32)
    for component, lesion in found:
        relabel[component] = lesion["label"]
    return [lesion for _, lesion in found], relabel[components]


def write_lesion_table(path_csv: str | Path, lesions: Sequence[Mapping[str, Any]]) -> None:
    """Write lesions as CSV (atomic): one row each; list fields become one column per element.

    ``centroid_mm`` becomes ``centroid_x_mm``, ``centroid_y_mm``, ``centroid_z_mm``; other lists
    get the axis number (``centroid_voxel_0``, ``bbox_voxel_3``). Extra keys a caller added
    (e.g. ``input``) are kept; keys starting with ``_`` are not written.
    """
    rows = [_flat_row(lesion) for lesion in lesions]
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["label", "probability", "diameter_mm"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path_csv, buf.getvalue())


def _flat_row(lesion: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in lesion.items():
        if key.startswith("_"):
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            for i, v in enumerate(value):
                name = f"centroid_{'xyz'[i]}_mm" if key == "centroid_mm" and i < 3 else f"{key}_{i}"
                row[name] = v
        else:
            row[key] = "" if value is None else value
    return row


def _diameter(inside: np.ndarray, start: np.ndarray, linear: np.ndarray) -> float:
    """Longest distance in mm between two voxel centres of the component ``inside``."""
    if inside.sum() > _EXACT_LIMIT:
        # The farthest pair lies on the convex hull, whose vertices are surface voxels:
        # drop the interior first (cheap), then keep the hull's vertices.
        inside = inside & ~ndimage.binary_erosion(inside)
        voxels = _hull_vertices(np.argwhere(inside))
    else:
        voxels = np.argwhere(inside)
    if len(voxels) < 2:
        return 0.0
    # A linear map keeps convex hulls, so hull vertices in voxel space are those in mm.
    return _max_pairwise_distance((voxels + start) @ linear.T)


def _hull_vertices(points: np.ndarray) -> np.ndarray:
    if len(points) <= points.shape[1] + 1:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:
        # Flat or straight components (e.g. one slice thick) have no full-dimensional hull.
        # Joggling the input by ~1e-11 still keeps every true extreme voxel as a vertex.
        return points[ConvexHull(points, qhull_options="QJ").vertices]


def _max_pairwise_distance(points: np.ndarray) -> float:
    n = len(points)
    block = max(1, _BLOCK_ELEMENTS // n)
    best = 0.0
    for first in range(0, n, block):
        best = max(best, float(cdist(points[first:first + block], points[first:]).max()))
    return best


def _probability_map(prob: Any) -> np.ndarray:
    if isinstance(prob, torch.Tensor):
        prob = prob.detach().cpu().float().numpy()
    p = np.asarray(prob)
    if p.dtype == bool or p.dtype.kind in "iu":
        p = p.astype(np.float32)
    if p.dtype.kind != "f":
        raise MedsightError(f"probability map must be numeric, got dtype {p.dtype}")
    if p.ndim not in (2, 3):
        raise MedsightError(f"probability map must be 2D or 3D without a channel axis, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise MedsightError("probability map contains NaN or infinite values")
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise MedsightError(f"probability map must lie in [0, 1] (found {p.min():g}..{p.max():g}); "
                            "pass softmax or sigmoid outputs, not logits")
    return p


def _geometry(affine: Any, n_spatial: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine's linear part (r x d, mm per voxel step) and offset (r) for a d-axis map."""
    if isinstance(affine, torch.Tensor):
        affine = affine.detach().cpu().numpy()
    a = np.asarray(affine, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not n_spatial < a.shape[0] <= 4:
        raise MedsightError(f"affine must be a square (d+1)x(d+1) matrix for a {n_spatial}D map "
                            f"(3x3 or 4x4 for 2D, 4x4 for 3D), got shape {a.shape}")
    r = a.shape[0] - 1
    if not np.isfinite(a).all() or not np.allclose(a[r], np.eye(r + 1)[r]):
        raise MedsightError(f"affine must be finite with last row {np.eye(r + 1)[r].tolist()}, got {a.tolist()}")
    linear = a[:r, :n_spatial]
    if np.linalg.matrix_rank(linear) < n_spatial:
        raise MedsightError(f"affine is singular (zero voxel size along an axis): {a.tolist()}")
    return linear, a[:r, r]
