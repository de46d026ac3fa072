"""What ``medsight evaluate`` adds so its numbers can be trusted: calibration before and after
temperature scaling, test-time augmentation, per-case uncertainty and the referral curve; and
the report section that shows them.

``trust_metrics`` returns the entries for ``metrics.json`` and the extra per-case columns for
``cases_<split>.csv`` (uncertainty, needs_review, the uncalibrated probabilities), from which
``add_trust_section`` redraws the figures, so a report can be rebuilt from the files alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medsight.evaluation import plots
from medsight.evaluation.calibration import expected_calibration_error
from medsight.evaluation.classification import predict_labels
from medsight.evaluation.referral import referral_curve
from medsight.evaluation.report import HtmlReport
from medsight.inference.calibration import CALIBRATION_FILE, calibrated_softmax, nll
from medsight.inference.uncertainty import member_uncertainty, needs_review

UNCALIBRATED = "uncalibrated "  # prefix of the case-table columns holding softmax(logits)


def trust_metrics(y: np.ndarray, logits: torch.Tensor, temperature: float, review_threshold: float | None,
                  threshold: float | None, class_names: Sequence[str], views: Sequence[str] = ()
                  ) -> tuple[dict, dict[str, list]]:
    """``metrics.json`` entries and case-table columns from the evaluated split's view logits ``(V, N, K)``."""
    views_cal = calibrated_softmax(logits, temperature)
    raw = calibrated_softmax(logits, 1.0).mean(0).numpy()
    cal = views_cal.mean(0).numpy()
    stats = member_uncertainty(views_cal.numpy())
    entropy = stats["entropy"]
    flags = needs_review(entropy, review_threshold)
    flagged = np.array([bool(f) for f in flags])
    correct = predict_labels(cal, threshold if len(class_names) == 2 else None) == y
    metrics = {
        "calibration": {"temperature": temperature, "ece_uncalibrated": expected_calibration_error(y, raw),
                        "ece": expected_calibration_error(y, cal), "nll_uncalibrated": nll(logits, torch.as_tensor(y)),
                        "nll": nll(logits, torch.as_tensor(y), temperature)},
        "tta": {"views": list(views)} if len(views) > 1 else None,
        "uncertainty": {
            "measure": "predictive entropy / log K" + (" of the test-time-augmented mean" if len(views) > 1 else ""),
            "mean": float(entropy.mean()),
            "mean_mutual_information": float(stats["mutual_information"].mean()) if len(views) > 1 else None,
            "review_threshold": review_threshold,
            "fraction_flagged": float(flagged.mean()) if review_threshold is not None else None,
            "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None,
            "accuracy_not_flagged": float(correct[~flagged].mean()) if (~flagged).any() else None,
        },
        "referral": referral_curve(y, cal, entropy, threshold),
    }
    columns: dict[str, list] = {"uncertainty": [f"{e:.6f}" for e in entropy],
                                "needs_review": ["" if f is None else int(f) for f in flags]}
    columns.update({f"{UNCALIBRATED}p[{n}]": [f"{p:.6f}" for p in raw[:, k]] for k, n in enumerate(class_names)})
    return metrics, columns


def add_trust_section(report: HtmlReport, metrics: dict, cases: Path, run_dir: Path) -> None:
    """Calibration (val fit, reliability before/after on the evaluated split) and the referral curve."""
    if "calibration" not in metrics:  # a metrics.json written before these existed
        return
    split, cal = metrics.get("split"), metrics["calibration"]
    report.add_heading("Calibration and uncertainty")
    fitted = _read_json(run_dir / CALIBRATION_FILE)
    rows = [{"item": "temperature T (probabilities = softmax(logits / T))", "value": cal["temperature"]}]
    if fitted:
        rows += [{"item": f"val ECE before → after (n = {fitted.get('n')})",
                  "value": f"{fitted['ece_before']:.3f} → {fitted['ece_after']:.3f}"},
                 {"item": "val NLL before → after", "value": f"{fitted['nll_before']:.3f} → {fitted['nll_after']:.3f}"}]
    else:
        rows.append({"item": "calibration.json", "value": "none: probabilities are uncalibrated "
                                                          "(run `medsight calibrate RUN`)"})
    rows += [{"item": f"{split} ECE before → after", "value": f"{cal['ece_uncalibrated']:.3f} → {cal['ece']:.3f}"}]
    if metrics.get("tta"):
        rows.append({"item": "test-time augmentation (softmax averaged)", "value": ", ".join(metrics["tta"]["views"])})
    report.add_table(rows)
    if cases.is_file():
        y, raw, calibrated = _read_probabilities(cases)
        report.add_image_grid([
            (f"Before calibration ({split})", plots.plot_calibration(y, raw, cal["ece_uncalibrated"])),
            (f"After temperature scaling ({split})", plots.plot_calibration(y, calibrated, cal["ece"])),
        ], min_width=380)
    unc = metrics.get("uncertainty") or {}
    threshold = unc.get("review_threshold")
    report.add_text(
        f"Uncertainty: {unc.get('measure', 'normalised predictive entropy')} (0 = certain, 1 = uniform). "
        + (f"A case needs review above {threshold:.3f}: the entropy that the most uncertain "
           f"{(fitted or {}).get('review_fraction', 0.1):.0%} of validation cases exceed, unless "
           f"evaluation.review_threshold sets it. Here {unc['fraction_flagged']:.1%} of the {split} cases "
           "are flagged." if threshold is not None else "No review threshold (run `medsight calibrate`)."))
    report.add_image("Referral curve: the retained cases' accuracy as the most uncertain are referred",
                     plots.plot_referral(metrics["referral"], unc.get("fraction_flagged")))
    curve = metrics["referral"]
    report.add_table([{"referred": f"{f:.0%}", "retained": n, "accuracy": a,
                       **({"AUC": curve["auc"][i]} if curve.get("auc") is not None else {})}
                      for i, (f, n, a) in enumerate(zip(curve["fraction_referred"], curve["n_retained"],
                                                        curve["accuracy"]))], caption="Referral curve")


def _read_probabilities(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, uncalibrated and calibrated probabilities from a case table (raw = calibrated if absent)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cal_cols = [k for k in rows[0] if k.startswith("p[")]
    raw_cols = [UNCALIBRATED + k for k in cal_cols]
    raw_cols = raw_cols if all(k in rows[0] for k in raw_cols) else cal_cols
    y = np.array([int(r["label"]) for r in rows])
    return (y, np.array([[float(r[k]) for k in raw_cols] for r in rows]),
            np.array([[float(r[k]) for k in cal_cols] for r in rows]))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
