"""The classification sections of the run report: metrics with CIs, an ensemble's members, the
confusion matrix, ROC, precision-recall and calibration plots, calibration and referral, and
diagnoses with their heatmaps (``medsight demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from medsight.evaluation import plots
from medsight.evaluation.outputs import read_cases
from medsight.evaluation.report import HtmlReport, RunPage
from medsight.evaluation.trust import add_trust_section

SUMMARY_KEYS = ["auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity",
                "precision", "f1", "ece", "brier"]


def summary_rows(page: RunPage) -> list[dict]:
    metrics, plan = page.metrics, page.plan
    return [
        {"item": "classes", "value": ", ".join(metrics["class_names"])},
        {"item": "model", "value": f"{page.config['model']['name']} ({plan['spatial_dims']}D, input "
                                   f"{'x'.join(map(str, plan['input_shape']))}, {plan['in_channels']} channel(s))"},
        {"item": "decision threshold", "value": f"{metrics.get('threshold')} ({metrics.get('threshold_source')})"},
    ]


def add_sections(report: HtmlReport, page: RunPage, predictions: Sequence[dict] | None = None) -> None:
    """``predictions``: records of ``medsight predict`` whose heatmaps go into the report."""
    metrics, names = page.metrics, page.metrics["class_names"]
    report.add_heading(f"Metrics with {metrics.get('ci_level', 0.95):.0%} bootstrap confidence intervals")
    report.add_metrics_table(metrics, keys=[k for k in SUMMARY_KEYS if k in metrics])

    if metrics.get("members"):
        report.add_heading("Ensemble and its members")
        report.add_table([{"model": "ensemble", "auc": metrics.get("auc"), "accuracy": metrics.get("accuracy"),
                           "ece": metrics.get("ece")}]
                         + [{"model": Path(m["run"]).name, **{k: m[k] for k in ("auc", "accuracy", "ece")}}
                            for m in metrics["members"]])
    cases = page.out_dir / f"cases_{metrics['split']}.csv"
    if cases.is_file():
        y, probs = read_cases(cases)
        thr = metrics.get("threshold") or 0.5
        report.add_image_grid([
            ("Confusion matrix", plots.plot_confusion_matrix(metrics["confusion_matrix"], names)),
            ("ROC curve", plots.plot_roc(y, probs, names, metrics.get("ci", {}).get("auc"), threshold=thr)),
            ("Precision-recall", plots.plot_precision_recall(y, probs, names, threshold=thr)),
            ("Calibration", plots.plot_calibration(y, probs, metrics.get("ece"))),
        ], min_width=440)
    add_trust_section(report, dict(metrics), cases, page.run_dir)
    if predictions:
        report.add_heading("Diagnoses with Grad-CAM heatmaps")
        report.add_image_grid([
            (f"{Path(p['input']).name}: {p['label']} ({p['probabilities'][p['label']]:.2f})",
             Path(p["heatmap"]).read_bytes()) for p in predictions if p.get("heatmap")], min_width=320)
