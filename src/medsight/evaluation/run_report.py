"""The run report: one self-contained HTML page per evaluation, one frame for every task kind.

:func:`write_report` writes the sections every run shares once: the summary (task, data, split,
then the kind's own lines), the training curves with the monitored metric marked, and the plan.
Between them go the kind's own sections, from :data:`SECTIONS`:

- classification: metrics with CIs, ensemble members, confusion matrix, ROC, precision-recall,
  calibration and referral, diagnoses with heatmaps (:mod:`~medsight.evaluation.classification_report`);
- segmentation: per-class metrics with CIs, Dice per case, FROC, best and worst cases, lesions
  (:mod:`~medsight.evaluation.segmentation_report`);
- detection: AP per class and mAP with CIs, precision-recall curves, images with true and
  predicted boxes (:mod:`~medsight.evaluation.detection_report`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from medsight.evaluation import classification_report, detection_report, segmentation_report
from medsight.evaluation.report import HtmlReport, RunPage
from medsight.runtime.ensemble_folder import is_ensemble, member_folders
from medsight.runtime.run_folder import METRICS_FILE, REPORT_FILE, read_plan, read_saved_config
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, TaskKind
from medsight.training.curves import plot_training_curves
from medsight.training.history import read_history


@dataclass(frozen=True)
class TaskSections:
    """What one task kind adds to the report: ``summary`` lines, its ``add`` sections
    ``(report, page, **details)``, and the ``monitor``-ed metric of runs whose config names none."""

    summary: Callable[[RunPage], list[dict]]
    add: Callable[..., None]
    monitor: str


SECTIONS: dict[str, TaskSections] = {
    CLASSIFICATION.name: TaskSections(classification_report.summary_rows, classification_report.add_sections,
                                      "val_loss"),
    SEGMENTATION.name: TaskSections(segmentation_report.summary_rows, segmentation_report.add_sections, "val_dice"),
    DETECTION.name: TaskSections(detection_report.summary_rows, detection_report.add_sections, "val_map"),
}


def write_report(out_dir: str | Path, run_dir: str | Path, kind: TaskKind,
                 metrics: Mapping[str, Any] | None = None, **details: Any) -> Path:
    """Write ``report.html`` into ``out_dir`` for the evaluation of ``run_dir`` (a run of ``kind``).

    ``metrics``: what the evaluation measured (default: ``out_dir/metrics.json``); ``details``
    go to the kind's sections (classification ``predictions``; segmentation ``rows``, ``best``,
    ``worst``, ``lesions``; detection ``cases``, ``score_shown``).
    """
    out_dir, run_dir = Path(out_dir), Path(run_dir)
    if metrics is None:
        metrics = json.loads((out_dir / METRICS_FILE).read_text())
    source = member_folders(run_dir)[0] if is_ensemble(run_dir) else run_dir  # an ensemble: its first member's
    page = RunPage(out_dir, run_dir, metrics, read_plan(source), read_saved_config(source))
    sections = SECTIONS[kind.name]
    report = HtmlReport(title=f"medsight run: {page.config.get('name', run_dir.name)}")

    report.add_heading("Summary")
    shown_task = page.plan.get("task", kind.name)  # a fused classifier says "fusion"
    report.add_table([
        {"item": "task", "value": shown_task},
        {"item": "data", "value": metrics.get("data")},
        {"item": "split evaluated", "value": f"{metrics.get('split')} (n = {metrics.get('n')})"},
        *sections.summary(page),
    ])
    sections.add(report, page, **details)
    history = read_history(run_dir)
    if history:
        report.add_heading("Training")
        report.add_image("Training curves", plot_training_curves(history, monitored(page, sections.monitor)))
    report.add_heading("Data plan (nnU-Net-style fingerprint and planned settings)")
    report.add_table([{"item": k, "value": json.dumps(v) if not isinstance(v, str) else v}
                      for k, v in page.plan.items()])
    return report.write(out_dir / REPORT_FILE)


def monitored(page: RunPage, default: str) -> str:
    """The metric training monitored: the saved (resolved) config's, else the plan's, else the kind's."""
    return ((page.config.get("train") or {}).get("monitor") or (page.plan.get("planned") or {}).get("train.monitor")
            or default)
