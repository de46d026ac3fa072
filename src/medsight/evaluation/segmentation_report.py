"""The segmentation sections of the run report (same HTML report as classification)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from medsight.evaluation.report import HtmlReport
from medsight.evaluation.segmentation_plots import plot_dice_per_class, plot_froc
from medsight.inference.contours import overlay_cases_png
from medsight.runtime.run_folder import REPORT_FILE, read_plan, read_saved_config
from medsight.training.curves import plot_training_curves
from medsight.training.history import read_history

SHOWN_METRICS = ("dice", "iou", "hd95_mm", "msd_mm", "abs_volume_error", "rel_volume_error")


def write_segmentation_report(out_dir: Path, run_dir: Path, metrics: dict, rows: list[dict],
                              best: Sequence[dict] = (), worst: Sequence[dict] = (),
                              lesions: Sequence[dict] = ()) -> Path:
    plan, cfg = read_plan(run_dir), read_saved_config(run_dir)
    names = metrics["class_names"]
    summary = metrics["summary"]
    report = HtmlReport(title=f"medsight run: {cfg.get('name', run_dir.name)}")
    report.add_heading("Summary")
    md = summary["mean_dice"]
    report.add_table([
        {"item": "task", "value": "segmentation"},
        {"item": "data", "value": metrics.get("data")},
        {"item": "split evaluated", "value": f"{metrics.get('split')} (n = {metrics.get('n')})"},
        {"item": "classes", "value": ", ".join(names[1:])},
        {"item": "model", "value": f"{cfg['model']['name']} ({plan['spatial_dims']}D, patch "
                                   f"{'x'.join(map(str, plan['input_shape']))})"},
        {"item": "mean Dice", "value": f"{md['mean']:.3f} [{_ci(md['ci'])}]" if md.get("mean") is not None else "—"},
    ])
    report.add_heading(f"Per class, with {summary['ci_level']:.0%} bootstrap confidence intervals over cases")
    table = []
    for name, per in summary["per_class"].items():
        for m in SHOWN_METRICS:
            s = per[m]
            table.append({"class": name, "metric": m, "mean": s["mean"], "median": s["median"],
                          "CI": _ci(s["ci"]), "cases": s["n"]})
    report.add_table(table, caption="hd95/msd in mm; volumes in mm³ (mm² in 2D); distances "
                                    "to an empty mask are left out (cases column)")
    figures = [("Dice per case and class", plot_dice_per_class(rows, names))]
    fr = metrics.get("froc") or {}
    if fr:
        figures.append((f"Lesion-level FROC (hit rule: {fr.get('hit_rule')})", plot_froc(fr)))
    report.add_image_grid(figures, min_width=440)
    if fr.get("sensitivity_at"):
        report.add_table([{"false positives per scan": k, "sensitivity": v} for k, v in fr["sensitivity_at"].items()],
                         caption=f"{fr['n_reference_lesions']} reference lesions in {fr['n_scans']} scans; "
                                 f"score (mean sensitivity) {fr['score']:.3f}" if fr.get("score") is not None else None)
    if best or worst:
        report.add_heading("Best and worst cases (reference solid, prediction dashed)")
        report.add_image_grid([(f"best {len(best)}", overlay_cases_png(list(best), names)),
                               (f"worst {len(worst)}", overlay_cases_png(list(worst), names))], min_width=440)
    if lesions:
        report.add_heading("Lesions found")
        report.add_table([{k: v for k, v in lesion.items() if k in ("input", "class", "probability", "diameter_mm",
                                                                     "volume_mm3", "area_mm2", "centroid_mm")}
                          for lesion in lesions[:50]])
    history = read_history(run_dir)
    if history:
        report.add_heading("Training")
        monitor = (plan.get("planned") or {}).get("train.monitor") or cfg["train"].get("monitor") or "val_dice"
        report.add_image("Training curves", plot_training_curves(history, monitor))
    report.add_heading("Plan (nnU-Net-style fingerprint and planned settings)")
    report.add_table([{"item": k, "value": json.dumps(v) if not isinstance(v, str) else v}
                      for k, v in plan.items()])
    path = Path(out_dir) / REPORT_FILE
    report.write(path)
    return path


def _ci(ci: Any) -> str:
    if not ci or ci[0] is None:
        return "—"
    return f"{ci[0]:.3f} – {ci[1]:.3f}"
