"""Evaluate a box-detection run on a split of its VOC folder: AP per class and mAP with bootstrap
CIs over images, the PR plot and the HTML report.

Writes into the run folder (or ``out_dir``) ``metrics.json``, ``pr_curve_<split>.png`` and
``report.html``. Boxes are compared in the original image pixels, difficult objects as VOC does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medsight.data.voc import DetectionItem, load_detection_image, voc_dataset
from medsight.errors import MedsightError
from medsight.evaluation.detection import detection_metrics_with_ci
from medsight.evaluation.detection_plots import plot_detection_pr
from medsight.evaluation.outputs import METRICS_FILE
from medsight.evaluation.run_report import write_report
from medsight.inference.detection import load_detector
from medsight.runtime.detection import Detections
from medsight.tasks import DETECTION
from medsight.utils.atomic import write_bytes, write_json

log = logging.getLogger(__name__)
N_SHOWN = 4  # test images drawn in the report
SCORE_SHOWN = 0.3  # predictions drawn there: those scoring at least this


def evaluate_detection(run: str | Path, split: str = "test", data: str | Path | None = None,
                       out_dir: str | Path | None = None) -> dict:
    """mAP and AP per class with 95% CIs of the run's best checkpoint on ``split`` of its data (or of
    another VOC folder); returns the metrics with the PR ``curves`` (left out of ``metrics.json``)."""
    loaded = load_detector(run)
    cfg = loaded.cfg
    root = Path(data) if data is not None else cfg.data.path
    dataset = voc_dataset(root, loaded.class_names, cfg.train.seed, cfg.data.split_fractions)
    items = dataset.split(split)
    if not items:
        raise MedsightError(f"{root}: the {split} split is empty")
    pictures = [load_detection_image(item) for item in items]
    found = loaded.detect(pictures)
    targets = [{"boxes": i.boxes, "labels": i.labels, "difficult": i.difficult} for i in items]
    metrics = detection_metrics_with_ci(found, targets, loaded.class_names, float(loaded.plan["iou_threshold"]),
                                        n_bootstrap=cfg.evaluation.n_bootstrap, seed=cfg.train.seed)
    metrics.update({"split": split, "data": str(root), "model": cfg.model.name, "task": DETECTION.name,
                    "class_names": loaded.class_names})
    out = Path(out_dir) if out_dir is not None else Path(run)
    write_bytes(out / f"pr_curve_{split}.png", plot_detection_pr(metrics))
    write_json(out / METRICS_FILE, {k: v for k, v in metrics.items() if k != "curves"})
    write_report(out, Path(run), DETECTION, metrics, cases=shown_cases(items, pictures, found),
                 score_shown=SCORE_SHOWN)
    log.info("%s split: mAP@%g %.4f (%s)", split, metrics["iou_threshold"], metrics["map"],
             ", ".join(f"{k} {v:.3f}" for k, v in metrics["ap"].items()))
    return metrics


def shown_cases(items: Sequence[DetectionItem], pictures: Sequence[torch.Tensor], found: Sequence[Detections],
                n: int = N_SHOWN) -> list[dict]:
    """The first ``n`` images that hold objects, with their true boxes and the predictions scoring
    at least :data:`SCORE_SHOWN`, for the report."""
    cases = []
    for item, picture, d in zip(items, pictures, found):
        if len(cases) == n:
            break
        if not len(item.labels):
            continue
        keep = d["scores"] >= SCORE_SHOWN
        cases.append({"image": picture.numpy(), "truth": np.asarray(item.boxes), "truth_labels": item.labels.tolist(),
                      "boxes": d["boxes"][keep].numpy(), "labels": d["labels"][keep].tolist(),
                      "scores": d["scores"][keep].tolist(),
                      "caption": f"{item.id}: {len(item.labels)} true, {int(keep.sum())} found"})
    return cases
