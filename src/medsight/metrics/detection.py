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
from typing import Mapping, Sequence

import numpy as np
from monai.data.box_utils import box_iou

Boxes = Mapping[str, "np.ndarray | object"]  # {"boxes": (N, 4), "labels": (N,), ["scores"|"difficult"]: (N,)}


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP from a ranked list's recall and precision (VOC devkit ``voc_ap``)."""
    mrec = np.concatenate([[0.0], np.asarray(recall, float), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, float), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, monotone from the right
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def class_pr_curve(predictions: Sequence[Boxes], targets: Sequence[Boxes], label: int,
                   iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Recall and precision down the ranked detections of one class; also #ground truth (not
    difficult) and #detections."""
    gt_boxes, gt_difficult, claimed = [], [], []
    for t in targets:
        keep = _array(t["labels"]).astype(int) == label
        gt_boxes.append(_array(t["boxes"]).reshape(-1, 4)[keep])
        difficult = _array(t["difficult"]).astype(bool)[keep] if "difficult" in t else np.zeros(keep.sum(), bool)
        gt_difficult.append(difficult)
        claimed.append(np.zeros(keep.sum(), bool))
    n_gt = int(sum((~d).sum() for d in gt_difficult))

    image_idx, scores, boxes = [], [], []
    for i, p in enumerate(predictions):
        keep = _array(p["labels"]).astype(int) == label
        image_idx += [i] * int(keep.sum())
        scores.append(_array(p["scores"]).reshape(-1)[keep])
        boxes.append(_array(p["boxes"]).reshape(-1, 4)[keep])
    scores_all = np.concatenate(scores) if scores else np.zeros(0)
    boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    order = np.argsort(-scores_all, kind="stable")  # stable: ties keep the input order, repeatably

    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for rank, d in enumerate(order):
        i = image_idx[d]
        if len(gt_boxes[i]) == 0:
            fp[rank] = 1
            continue
        ious = np.asarray(box_iou(boxes_all[d:d + 1], gt_boxes[i]))[0]
        best = int(np.argmax(ious))
        if ious[best] > iou_threshold:  # ">" as in the VOC devkit
            if gt_difficult[i][best]:
                continue  # neither rewarded nor penalised
            if not claimed[i][best]:
                tp[rank], claimed[i][best] = 1, True
            else:
                fp[rank] = 1  # a duplicate of an already found object
        else:
            fp[rank] = 1
    keep = (tp + fp) > 0  # detections on difficult objects drop out of the ranking
    tp, fp = np.cumsum(tp[keep]), np.cumsum(fp[keep])
    recall = tp / n_gt if n_gt else np.full(len(tp), np.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    return recall, precision, n_gt, len(order)


def detection_metrics(predictions: Sequence[Boxes], targets: Sequence[Boxes], class_names: Sequence[str],
                      iou_threshold: float = 0.5) -> dict:
    """AP per class and mAP over the classes that have ground truth, with the PR curves.

    ``predictions[i]`` and ``targets[i]`` belong to the same image: dicts of ``boxes`` (N, 4)
    xyxy, ``labels`` (N,) class indices, plus ``scores`` (predictions) or optional
    ``difficult`` (targets); tensors or arrays.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    ap, n_gt, n_det, curves = {}, {}, {}, {}
    for k, name in enumerate(class_names):
        recall, precision, n_gt[name], n_det[name] = class_pr_curve(predictions, targets, k, iou_threshold)
        ap[name] = average_precision(recall, precision) if n_gt[name] else math.nan
        curves[name] = {"recall": recall.tolist(), "precision": precision.tolist()}
    defined = [v for v in ap.values() if not math.isnan(v)]
    return {"iou_threshold": iou_threshold, "ap": ap, "map": float(np.mean(defined)) if defined else math.nan,
            "n_ground_truth": n_gt, "n_detections": n_det, "n_images": len(targets), "curves": curves}


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)
