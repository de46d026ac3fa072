"""The segmentation sections of the run report: per-class overlap and distance metrics with CIs,
Dice per case, lesion-level FROC, the best and worst cases drawn, and the lesions found."""

from __future__ import annotations

from typing import Sequence

from medsight.evaluation.report import HtmlReport, RunPage, interval_text
from medsight.evaluation.segmentation_plots import plot_dice_per_class, plot_froc
from medsight.inference.contours import overlay_cases_png

SHOWN_METRICS = ("dice", "iou", "hd95_mm", "msd_mm", "abs_volume_error", "rel_volume_error")


def summary_rows(page: RunPage) -> list[dict]:
    metrics, plan = page.metrics, page.plan
    md = metrics["summary"]["mean_dice"]
    return [
        {"item": "classes", "value": ", ".join(metrics["class_names"][1:])},
        {"item": "model", "value": f"{page.config['model']['name']} ({plan['spatial_dims']}D, patch "
                                   f"{'x'.join(map(str, plan['input_shape']))})"},
        {"item": "mean Dice", "value": f"{md['mean']:.3f} [{interval_text(md['ci'])}]" if md.get("mean") is not None else "—"},
    ]


def add_sections(report: HtmlReport, page: RunPage, rows: Sequence[dict] = (), best: Sequence[dict] = (),
                 worst: Sequence[dict] = (), lesions: Sequence[dict] = ()) -> None:
    """``rows``: the per-case metrics; ``best``/``worst``: cases to draw (image, ref, pred, caption);
    ``lesions``: rows of a lesion table."""
    metrics = page.metrics
    names, summary = metrics["class_names"], metrics["summary"]
    report.add_heading(f"Per class, with {summary['ci_level']:.0%} bootstrap confidence intervals over cases")
    table = []
    for name, per in summary["per_class"].items():
        for m in SHOWN_METRICS:
            s = per[m]
            table.append({"class": name, "metric": m, "mean": s["mean"], "median": s["median"],
                          "CI": interval_text(s["ci"]), "cases": s["n"]})
    report.add_table(table, caption="hd95/msd in mm; volumes in mm³ (mm² in 2D); distances "
                                    "to an empty mask are left out (cases column)")
    figures = [("Dice per case and class", plot_dice_per_class(list(rows), names))] if rows else []
    fr = metrics.get("froc") or {}
    if fr:
        figures.append((f"Lesion-level FROC (hit rule: {fr.get('hit_rule')})", plot_froc(fr)))
    if figures:
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

