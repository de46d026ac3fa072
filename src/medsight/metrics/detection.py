"""Box detection metrics, Pascal VOC style: average precision per class and its mean.

The rule is the VOC devkit's (2010 onwards): detections of a class, pooled over all images, are
ranked by score; each is a true positive when its best-overlapping ground-truth box of that
class in the same image has IoU above the threshold (0.5 gives AP@0.5) and was not claimed by
a higher-ranked detection, else a false positive. A match with a box marked *difficult*
counts as neither. AP is the area under the precision-recall curve with precision made
monotone from the right (all-point interpolation, not the old 11-point rule, nor COCO's
101-point sampling that MONAI's ``COCOMetric`` implements).

A class without ground-truth boxes in the evaluated set has no AP (NaN) and is left out of
the mean; its detections are still counted in ``n_detections``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from monai.data.box_utils import box_iou

Boxes = Mapping[str, "np.ndarray | object"]  # {"boxes": (N, 4), "labels": (N,), ["scores"|"difficult"]: (N,)}


def average_precision(recall: np.ndarray, precision: np.ndarray) -> "float | np.ndarray":
    """All-point interpolated AP from a ranked list's recall and precision (VOC devkit ``voc_ap``).

    Along the last axis: a float for one list, one AP per row for ``(B, D)`` arrays (resamples).
    """
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    edge = np.zeros(recall.shape[:-1] + (1,))
    mrec = np.concatenate([edge, recall, edge + 1.0], axis=-1)
    mpre = np.concatenate([edge, precision, edge], axis=-1)
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre, -1), axis=-1), -1)  # envelope, monotone from the right
    ap = np.sum(np.diff(mrec, axis=-1) * mpre[..., 1:], axis=-1)  # area where recall steps up
    return float(ap) if ap.ndim == 0 else ap


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections after matching, best score first: the image each came from and
    whether it found an object (detections on difficult objects are dropped), with the objects
    to find per image. Matching happens within an image, so a resample of images reuses it."""

    image: np.ndarray  # (D,) image index of each ranked detection
    tp: np.ndarray  # (D,) bool: a true positive (else a false positive)
    n_gt: np.ndarray  # (n_images,) ground-truth objects (not difficult) per image
    n_detections: int  # detections of the class, those dropped included

    def curves(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Recall and precision down the ranking, and the objects to find, when image ``i`` counts
        ``weights[..., i]`` times (a bootstrap resample; default once each). Recall is NaN without objects."""
        w = np.ones(len(self.n_gt)) if weights is None else np.asarray(weights, float)
        counted = w[..., self.image] if len(self.image) else np.zeros(w.shape[:-1] + (0,))
        tp, fp = np.cumsum(counted * self.tp, axis=-1), np.cumsum(counted * ~self.tp, axis=-1)
        n_gt = w @ self.n_gt
        recall = tp / np.where(n_gt > 0, n_gt, np.nan)[..., None]
        precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
        return recall, precision, n_gt


def match_class(predictions: Sequence[Boxes], targets: Sequence[Boxes], label: int,
                iou_threshold: float = 0.5) -> ClassMatches:
    """Rank the detections of one class over all images and match each to the ground truth."""
    gt_boxes, gt_difficult, claimed = [], [], []
    for t in targets:
        keep = _array(t["labels"]).astype(int) == label
        gt_boxes.append(_array(t["boxes"]).reshape(-1, 4)[keep])
        difficult = _array(t["difficult"]).astype(bool)[keep] if "difficult" in t else np.zeros(keep.sum(), bool)
        gt_difficult.append(difficult)
        claimed.append(np.zeros(keep.sum(), bool))

    image_idx, scores, boxes = [], [], []
    for i, p in enumerate(predictions):
        keep = _array(p["labels"]).astype(int) == label
        image_idx += [i] * int(keep.sum())
        scores.append(_array(p["scores"]).reshape(-1)[keep])
        boxes.append(_array(p["boxes"]).reshape(-1, 4)[keep])
    scores_all = np.concatenate(scores) if scores else np.zeros(0)
    boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    order = np.argsort(-scores_all, kind="stable")  # stable: ties keep the input order, repeatably

    tp, fp = np.zeros(len(order), bool), np.zeros(len(order), bool)
    for rank, d in enumerate(order):
        i = image_idx[d]
        if len(gt_boxes[i]) == 0:
            fp[rank] = True
            continue
        ious = np.asarray(box_iou(boxes_all[d:d + 1], gt_boxes[i]))[0]
        best = int(np.argmax(ious))
        if ious[best] > iou_threshold:  # ">" as in the VOC devkit
            if gt_difficult[i][best]:
                continue  # neither rewarded nor penalised
            if not claimed[i][best]:
                tp[rank], claimed[i][best] = True, True
            else:
                fp[rank] = True  # a duplicate of an already found object
        else:
            fp[rank] = True
    keep = tp | fp  # detections on difficult objects drop out of the ranking
    ranked_images = np.asarray(image_idx, int)[order]
    return ClassMatches(ranked_images[keep], tp[keep], np.array([int((~d).sum()) for d in gt_difficult]),
                        len(order))


def class_pr_curve(predictions: Sequence[Boxes], targets: Sequence[Boxes], label: int,
                   iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Recall and precision down the ranked detections of one class; also #ground truth (not
    difficult) and #detections."""
    matches = match_class(predictions, targets, label, iou_threshold)
    recall, precision, n_gt = matches.curves()
    return recall, precision, int(n_gt), matches.n_detections


def match_detections(predictions: Sequence[Boxes], targets: Sequence[Boxes], n_classes: int,
                     iou_threshold: float = 0.5) -> list[ClassMatches]:
    """:func:`match_class` for every class; ``predictions[i]`` and ``targets[i]`` are one image's."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    return [match_class(predictions, targets, k, iou_threshold) for k in range(n_classes)]


def detection_metrics(predictions: Sequence[Boxes], targets: Sequence[Boxes], class_names: Sequence[str],
                      iou_threshold: float = 0.5) -> dict:
    """AP per class and mAP over the classes that have ground truth, with the PR curves.

    ``predictions[i]`` and ``targets[i]`` belong to the same image: dicts of ``boxes`` (N, 4)
    xyxy, ``labels`` (N,) class indices, plus ``scores`` (predictions) or optional
    ``difficult`` (targets); tensors or arrays.
    """
    matches = match_detections(predictions, targets, len(class_names), iou_threshold)
    return summarize_matches(matches, class_names, iou_threshold)


def summarize_matches(matches: Sequence[ClassMatches], class_names: Sequence[str], iou_threshold: float) -> dict:
    """The :func:`detection_metrics` dict from each class's matches."""
    ap, n_gt, n_det, curves = {}, {}, {}, {}
    for m, name in zip(matches, class_names):
        recall, precision, objects = m.curves()
        n_gt[name], n_det[name] = int(objects), m.n_detections
        ap[name] = average_precision(recall, precision) if n_gt[name] else math.nan
        curves[name] = {"recall": recall.tolist(), "precision": precision.tolist()}
    defined = [v for v in ap.values() if not math.isnan(v)]
    n_images = len(matches[0].n_gt) if matches else 0
    return {"iou_threshold": iou_threshold, "ap": ap, "map": float(np.mean(defined)) if defined else math.nan,
            "n_ground_truth": n_gt, "n_detections": n_det, "n_images": n_images, "curves": curves}


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)
