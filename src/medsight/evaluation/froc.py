"""Lesion-level evaluation: matching predicted lesions to reference lesions, FROC and its score.

Reference lesions are the connected components (full connectivity, as in
:mod:`medsight.inference.lesions`) of ``ref_mask > 0``. A predicted lesion *hits* a reference
lesion under one of two rules:

- ``"center"``: its ``centroid_voxel``, rounded to the nearest voxel (halves up), lies inside the
  reference lesion (the LUNA16 rule, with the lesion's voxels standing in for the sphere);
- ``"iou"``: the IoU of its voxels with the reference lesion is >= ``iou_threshold``; the
  voxels come from the lesion label map of :func:`medsight.inference.lesions.label_lesions`
  (passed as ``pred_labels``; each lesion's ``label`` is its value there). With several
  candidates, the reference lesion of highest IoU is the one hit.

Counting, as in the LUNA16 evaluation: at a probability threshold, a reference lesion is
detected (one true positive) when any lesion at or above the threshold hits it; a lesion that
hits nothing is a false positive; further hits on an already detected reference lesion are
neither. Sensitivity at a false-positive rate is read from the FROC curve, starting at
(0 FP, 0 sensitivity), by linear interpolation between its operating points (as the LUNA16
script's ``np.interp``), and stays at the last sensitivity beyond the last point. The score
is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (LUNA16's CPM).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from scipy import ndimage

from medsight.errors import MedsightError
from medsight.evaluation.segmentation_plots import plot_froc

__all__ = ["LUNA16_FP_RATES", "froc", "lesion_hits", "match_lesions", "plot_froc", "reference_lesions"]

HitRule = Literal["center", "iou"]
LUNA16_FP_RATES = (0.125, 0.25, 0.5, 1, 2, 4, 8)
Lesions = Sequence[Mapping[str, Any]]


def reference_lesions(ref_mask: Any) -> tuple[np.ndarray, int]:
    """Label map (1..n) of the connected components of ``ref_mask > 0``, and n."""
    mask = np.asarray(ref_mask)
    if mask.ndim not in (2, 3):
        raise MedsightError(f"reference mask must be 2D or 3D, got shape {mask.shape}")
    labels, n = ndimage.label(mask > 0, structure=np.ones((3,) * mask.ndim, dtype=bool))
    return labels, int(n)


def lesion_hits(
    pred_lesions: Lesions,
    ref_mask: Any,
    hit_rule: HitRule = "center",
    iou_threshold: float = 0.1,
    *,
    pred_labels: Any = None,
) -> list[int | None]:
    """For each predicted lesion, the reference lesion it hits (its label in
    :func:`reference_lesions`), or None. Several lesions may hit the same reference lesion."""
    _check_rule(hit_rule, iou_threshold)
    return _hits(pred_lesions, *reference_lesions(ref_mask), hit_rule, iou_threshold, pred_labels)


def match_lesions(
    pred_lesions: Lesions,
    ref_mask: Any,
    hit_rule: HitRule = "center",
    iou_threshold: float = 0.1,
    *,
    pred_labels: Any = None,
) -> list[bool]:
    """Whether each predicted lesion hits a reference lesion (see the module docstring).

    A second hit on the same reference lesion is True here too; :func:`froc` counts it as
    neither a true nor a false positive. Use :func:`lesion_hits` to see which lesion is hit.
    """
    return [hit is not None for hit in lesion_hits(pred_lesions, ref_mask, hit_rule, iou_threshold,
                                                   pred_labels=pred_labels)]


def froc(
    cases: Sequence[tuple[Any, ...]],
    hit_rule: HitRule = "center",
    iou_threshold: float = 0.1,
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
) -> dict[str, Any]:
    """FROC over scans and its score; ``cases`` are ``(lesions, ref_mask)`` pairs, or
    ``(lesions, ref_mask, pred_labels)`` for the ``"iou"`` rule (every scan counts, with or
    without lesions of either kind).

    Returns a JSON-ready dict: the curve over decreasing probability ``thresholds`` (one point
    per distinct lesion probability; ``fp_per_scan`` and ``sensitivity`` at each), the
    requested ``fp_rates`` and ``sensitivity_at`` (keyed by the rate as text, ``"0.125"``,
    ``"1"``, so it survives a JSON round trip), ``score`` (their mean: LUNA16's CPM with the
    default rates), ``n_reference_lesions``, ``n_detected`` (reference lesions hit at the
    lowest threshold), ``n_predicted_lesions``, ``n_scans``, ``hit_rule`` and ``iou_threshold``
    (None for the centre rule). Sensitivities and the score are None without reference lesions.
    """
    _check_rule(hit_rule, iou_threshold)
    if not cases:
        raise MedsightError("no scans to evaluate")
    return froc_from_scans([scan_hits(case, hit_rule, iou_threshold) for case in cases], hit_rule,
                           iou_threshold, fp_rates)


ScanHits = tuple[list[float], list[int | None], int]


def scan_hits(case: tuple[Any, ...], hit_rule: HitRule = "center", iou_threshold: float = 0.1) -> ScanHits:
    """One scan reduced to what FROC needs: each predicted lesion's probability, the reference
    lesion it hits (or None) and the number of reference lesions. Evaluation keeps this, not
    the scan's masks, so memory does not grow with the size or number of scans."""
    if len(case) not in (2, 3):
        raise MedsightError("each FROC case is (lesions, ref_mask) or (lesions, ref_mask, pred_labels)")
    lesions = case[0]
    ref_labels, n_case = reference_lesions(case[1])
    hits = _hits(lesions, ref_labels, n_case, hit_rule, iou_threshold, case[2] if len(case) == 3 else None)
    return [float(lesion["probability"]) for lesion in lesions], list(hits), n_case


def froc_from_scans(scans: Sequence[ScanHits], hit_rule: HitRule = "center", iou_threshold: float = 0.1,
                    fp_rates: Sequence[float] = LUNA16_FP_RATES) -> dict[str, Any]:
    """:func:`froc` from scans already reduced by :func:`scan_hits`."""
    rates = [float(r) for r in fp_rates]
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise MedsightError(f"false-positive rates must be positive numbers, got {list(fp_rates)}")
    if not scans:
        raise MedsightError("no scans to evaluate")
    probs: list[float] = []
    hit_ids: list[int] = []  # -1: hits nothing; else a reference lesion id unique over scans
    n_ref = 0
    for scan_probs, hits, n_case in scans:
        probs.extend(scan_probs)
        hit_ids.extend(-1 if h is None else n_ref + h for h in hits)
        n_ref += n_case
    if not all(math.isfinite(p) for p in probs):
        raise MedsightError("lesion probabilities must be finite numbers")
    thresholds, fps, tps = _operating_points(np.array(probs), np.array(hit_ids, dtype=np.int64))
    n_scans = len(scans)
    fp_per_scan = fps / n_scans
    sens_at: dict[str, float | None] = {f"{r:g}": None for r in rates}
    sensitivity: list[float] | None = None
    score = None
    if n_ref:
        sens = tps / n_ref
        sensitivity = sens.tolist()
        values = _sensitivity_at(fp_per_scan, sens, rates)
        sens_at = {f"{r:g}": v for r, v in zip(rates, values)}
        score = float(np.mean(values))
    return {
        "thresholds": thresholds.tolist(),
        "fp_per_scan": fp_per_scan.tolist(),
        "sensitivity": sensitivity,
        "fp_rates": rates,
        "sensitivity_at": sens_at,
        "score": score,
        "n_reference_lesions": n_ref,
        "n_detected": int(tps[-1]) if tps.size else 0,
        "n_predicted_lesions": len(probs),
        "n_scans": n_scans,
        "hit_rule": hit_rule,
        "iou_threshold": float(iou_threshold) if hit_rule == "iou" else None,
    }


def _operating_points(probs: np.ndarray, hit_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with the false and true positives at each (``p >= t``)."""
    if probs.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    order = np.argsort(-probs, kind="stable")
    probs, hit_ids = probs[order], hit_ids[order]
    is_fp = hit_ids < 0
    # Only the most probable hit on each reference lesion is a true positive.
    first_hit = np.zeros(hit_ids.size, dtype=bool)
    hit_positions = np.flatnonzero(~is_fp)
    _, first = np.unique(hit_ids[hit_positions], return_index=True)
    first_hit[hit_positions[first]] = True
    # One point per distinct probability: the last lesion of each group of ties.
    last_of_group = np.r_[probs[1:] != probs[:-1], True]
    return (probs[last_of_group], np.cumsum(is_fp)[last_of_group].astype(float),
            np.cumsum(first_hit)[last_of_group].astype(float))


def _sensitivity_at(fp_per_scan: np.ndarray, sensitivity: np.ndarray, rates: Sequence[float]) -> list[float]:
    """Sensitivity at each rate by linear interpolation on the curve from (0, 0)."""
    fps = np.r_[0.0, fp_per_scan]
    sens = np.r_[0.0, sensitivity]
    # Where points share an FP rate (only true positives added), the highest sensitivity counts.
    keep = np.r_[fps[1:] != fps[:-1], True]
    return [float(v) for v in np.interp(rates, fps[keep], sens[keep])]


def _hits(lesions: Lesions, ref_labels: np.ndarray, n_ref: int, hit_rule: str, iou_threshold: float,
          pred_labels: Any) -> list[int | None]:
    if not lesions:
        return []
    if hit_rule == "center":
        return [_center_hit(lesion, ref_labels) for lesion in lesions]
    if pred_labels is None:
        raise MedsightError("the 'iou' hit rule needs the predicted lesion label map (pred_labels)")
    iou = _iou_matrix(np.asarray(pred_labels), ref_labels, n_ref)
    hits: list[int | None] = []
    for lesion in lesions:
        label = int(lesion["label"])
        if not 0 < label < iou.shape[0]:
            raise MedsightError(f"lesion label {label} is not in the predicted lesion label map")
        best = int(np.argmax(iou[label])) if n_ref else 0
        hits.append(best + 1 if n_ref and iou[label, best] >= iou_threshold else None)
    return hits


def _center_hit(lesion: Mapping[str, Any], ref_labels: np.ndarray) -> int | None:
    # Nearest voxel, halves rounded up (numpy's rint would round them to even).
    centre = np.floor(np.asarray(lesion["centroid_voxel"], dtype=np.float64) + 0.5).astype(np.int64)
    if centre.shape != (ref_labels.ndim,) or (centre < 0).any() or (centre >= ref_labels.shape).any():
        raise MedsightError(f"lesion centre {lesion['centroid_voxel']} lies outside the reference mask "
                            f"of shape {ref_labels.shape}: lesions and mask must come from the same image")
    hit = int(ref_labels[tuple(centre)])
    return hit or None


def _iou_matrix(pred_labels: np.ndarray, ref_labels: np.ndarray, n_ref: int) -> np.ndarray:
    """IoU of every predicted lesion (rows, by label) with every reference lesion (columns 0..n-1)."""
    if pred_labels.shape != ref_labels.shape:
        raise MedsightError(f"predicted lesion map shape {pred_labels.shape} does not match "
                            f"reference mask shape {ref_labels.shape}")
    if pred_labels.dtype.kind not in "iu" or (pred_labels.size and pred_labels.min() < 0):
        raise MedsightError("predicted lesion map must hold non-negative integer lesion labels")
    n_pred = int(pred_labels.max()) + 1 if pred_labels.size else 1
    # Joint histogram of (predicted label, reference label) over all voxels: intersections.
    codes = pred_labels.astype(np.int64).ravel() * (n_ref + 1) + ref_labels.ravel()
    inter = np.bincount(codes, minlength=n_pred * (n_ref + 1)).reshape(n_pred, n_ref + 1)
    pred_size, ref_size = inter.sum(axis=1), inter.sum(axis=0)
    union = pred_size[:, None] + ref_size[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    return iou[:, 1:]


def _check_rule(hit_rule: str, iou_threshold: float) -> None:
    if hit_rule not in ("center", "iou"):
        raise MedsightError(f"hit rule must be 'center' or 'iou', got {hit_rule!r}")
    if hit_rule == "iou" and not (math.isfinite(iou_threshold) and 0.0 < iou_threshold <= 1.0):
        raise MedsightError(f"IoU threshold must be in (0, 1], got {iou_threshold}")
