"""Evaluate a box-detection run on a split of its VOC folder: AP per class, mAP and the PR plot.

Writes into the run folder (or ``out_dir``) ``metrics.json`` and ``pr_curve_<split>.png``.
Boxes are compared in the original image pixels, difficult objects as VOC does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medsight.data.voc import load_detection_image, voc_dataset
from medsight.evaluation.detection import plot_detection_pr
from medsight.evaluation.outputs import METRICS_FILE
from medsight.inference.detection import load_detector
from medsight.metrics.detection import detection_metrics
from medsight.utils.atomic import write_bytes, write_json

log = logging.getLogger(__name__)


def evaluate_detection(run: str | Path, split: str = "test", data: str | Path | None = None,
                       out_dir: str | Path | None = None) -> dict:
    """mAP of the run's best checkpoint on ``split`` of its data (or of another VOC folder)."""
    loaded = load_detector(run)
    root = Path(data) if data is not None else loaded.cfg.data.path
    dataset = voc_dataset(root, loaded.class_names, loaded.cfg.train.seed, loaded.cfg.data.split_fractions)
    items = dataset.split(split)
    found = loaded.detect([load_detection_image(item) for item in items])
    targets = [{"boxes": i.boxes, "labels": i.labels, "difficult": i.difficult} for i in items]
    metrics = detection_metrics(found, targets, loaded.class_names, float(loaded.plan["iou_threshold"]))
    out = Path(out_dir) if out_dir is not None else Path(run)
    write_bytes(out / f"pr_curve_{split}.png", plot_detection_pr(metrics))
    summary = {k: v for k, v in metrics.items() if k != "curves"}
    summary.update({"split": split, "data": str(root), "model": loaded.cfg.model.name, "task": "detection"})
    write_json(out / METRICS_FILE, summary)
    log.info("%s split: mAP@%g %.4f (%s)", split, metrics["iou_threshold"], metrics["map"],
             ", ".join(f"{k} {v:.3f}" for k, v in metrics["ap"].items()))
    return metrics
