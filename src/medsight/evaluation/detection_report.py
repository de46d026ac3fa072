"""The box-detection sections of the run report: AP per class and mAP with bootstrap CIs over
images, the precision-recall curves, and a few test images with their true and predicted boxes."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from medsight.evaluation.detection_plots import plot_detection_cases, plot_detection_pr
from medsight.evaluation.report import HtmlReport, RunPage, interval_text


def summary_rows(page: RunPage) -> list[dict]:
    metrics, plan = page.metrics, page.plan
    shape = plan.get("input_shape_median")
    size = f", median image {'x'.join(map(str, shape))}" if shape else ""
    return [
        {"item": "classes", "value": ", ".join(metrics["ap"])},
        {"item": "model", "value": f"{page.config['model']['name']} (2D, images scaled by {plan.get('scale')}{size})"},
        {"item": f"mAP@{metrics['iou_threshold']:g}",
         "value": f"{_number(metrics['map'])} [{interval_text((metrics.get('ci') or {}).get('map'))}]"},
    ]


def add_sections(report: HtmlReport, page: RunPage, cases: Sequence[Mapping[str, Any]] = (),
                 score_shown: float | None = None) -> None:
    """``cases``: test images with true and predicted boxes to draw (:func:`plot_detection_cases`),
    of which the predictions scoring at least ``score_shown``."""
    metrics = page.metrics
    ci = metrics.get("ci") or {}
    level = metrics.get("ci_level", 0.95)
    report.add_heading(f"Average precision at IoU {metrics['iou_threshold']:g}, with {level:.0%} bootstrap "
                       "confidence intervals over images")
    rows = [{"class": name, "AP": ap, f"{level:.0%} CI": interval_text((ci.get("ap") or {}).get(name)),
             "objects": metrics["n_ground_truth"][name], "detections": metrics["n_detections"][name]}
            for name, ap in metrics["ap"].items()]
    rows.append({"class": "mean (mAP)", "AP": metrics["map"], f"{level:.0%} CI": interval_text(ci.get("map")),
                 "objects": sum(metrics["n_ground_truth"].values()),
                 "detections": sum(metrics["n_detections"].values())})
    report.add_table(rows, caption=f"{metrics.get('n', metrics.get('n_images'))} images; Pascal VOC rule (all-point "
                                   "interpolation); a class without objects has no AP and is left out of the mean")
    figures = []
    if metrics.get("curves"):
        figures.append(("Precision-recall per class", plot_detection_pr(metrics)))
    if cases:
        shown = f" (predictions scoring ≥ {score_shown:g})" if score_shown is not None else ""
        figures.append((f"{len(cases)} {metrics.get('split', '')} images: true boxes solid, predicted "
                        f"dashed{shown}", plot_detection_cases(cases, list(metrics["ap"]))))
    if figures:
        report.add_image_grid(figures, min_width=440)


def _number(value: Any) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

