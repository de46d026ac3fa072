"""The run report: one self-contained HTML page rebuilt from the files of a run folder."""

from __future__ import annotations

import json
from pathlib import Path

from medsight.evaluation import plots
from medsight.evaluation.outputs import METRICS_FILE, read_cases
from medsight.evaluation.report import HtmlReport
from medsight.evaluation.trust import add_trust_section
from medsight.runtime.ensemble_folder import is_ensemble, member_folders
from medsight.runtime.run_folder import REPORT_FILE, read_plan, read_saved_config
from medsight.training.curves import plot_training_curves
from medsight.training.history import read_history

SUMMARY_KEYS = ["auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity",
                "precision", "f1", "ece", "brier"]


def write_run_report(out_dir: Path, run_dir: Path, predictions: list[dict] | None = None) -> Path:
    """Write ``report.html`` into ``out_dir`` from ``metrics.json``, the case table and the run."""
    out_dir, run_dir = Path(out_dir), Path(run_dir)
    metrics = json.loads((out_dir / METRICS_FILE).read_text())
    source = member_folders(run_dir)[0] if is_ensemble(run_dir) else run_dir  # an ensemble: its first member's
    plan, cfg = read_plan(source), read_saved_config(source)
    names = metrics["class_names"]
    report = HtmlReport(title=f"medsight run: {cfg.get('name', run_dir.name)}")

    report.add_heading("Summary")
    report.add_table([
        {"item": "task", "value": plan.get("task", "classification")},
        {"item": "data", "value": metrics.get("data")},
        {"item": "split evaluated", "value": f"{metrics.get('split')} (n = {metrics.get('n')})"},
        {"item": "classes", "value": ", ".join(names)},
        {"item": "model", "value": f"{cfg['model']['name']} ({plan['spatial_dims']}D, input "
                                   f"{'x'.join(map(str, plan['input_shape']))}, {plan['in_channels']} channel(s))"},
        {"item": "decision threshold", "value": f"{metrics.get('threshold')} ({metrics.get('threshold_source')})"},
    ])
    report.add_heading(f"Metrics with {metrics.get('ci_level', 0.95):.0%} bootstrap confidence intervals")
    report.add_metrics_table(metrics, keys=[k for k in SUMMARY_KEYS if k in metrics])

    if metrics.get("members"):
        report.add_heading("Ensemble and its members")
        report.add_table([{"model": "ensemble", "auc": metrics.get("auc"), "accuracy": metrics.get("accuracy"),
                           "ece": metrics.get("ece")}]
                         + [{"model": Path(m["run"]).name, **{k: m[k] for k in ("auc", "accuracy", "ece")}}
                            for m in metrics["members"]])
    cases = out_dir / f"cases_{metrics['split']}.csv"
    if cases.is_file():
        y, probs = read_cases(cases)
        thr = metrics.get("threshold") or 0.5
        report.add_image_grid([
            ("Confusion matrix", plots.plot_confusion_matrix(metrics["confusion_matrix"], names)),
            ("ROC curve", plots.plot_roc(y, probs, names, metrics.get("ci", {}).get("auc"), threshold=thr)),
            ("Precision-recall", plots.plot_precision_recall(y, probs, names, threshold=thr)),
            ("Calibration", plots.plot_calibration(y, probs, metrics.get("ece"))),
        ], min_width=440)
    add_trust_section(report, metrics, cases, run_dir)
    history = read_history(run_dir)
    if history:
        report.add_heading("Training")
        monitor = cfg["train"].get("monitor") or (plan.get("planned") or {}).get("train.monitor") or "val_loss"
        report.add_image("Training curves", plot_training_curves(history, monitor))
    if predictions:
        report.add_heading("Diagnoses with Grad-CAM heatmaps")
        report.add_image_grid([
            (f"{Path(p['input']).name}: {p['label']} ({p['probabilities'][p['label']]:.2f})",
             Path(p["heatmap"]).read_bytes()) for p in predictions if p.get("heatmap")], min_width=320)
    report.add_heading("Data plan")
    report.add_table([{"item": k, "value": json.dumps(v) if not isinstance(v, str) else v}
                      for k, v in plan.items()])
    path = out_dir / REPORT_FILE
    report.write(path)
    return path
