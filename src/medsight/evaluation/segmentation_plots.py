"""Segmentation and lesion-detection figures as PNG bytes, in the style of :mod:`.plots`.

Per-class Dice distributions and the FROC curve (the contour overlays of chosen cases are in
:mod:`medsight.inference.contours`). Like the classification figures they are drawn on a bare
:class:`~matplotlib.figure.Figure` with the Agg canvas, so nothing touches pyplot's global state.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from medsight.utils.figures import message_figure, styled, to_png


@styled
def plot_dice_per_class(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str], *, seed: int = 0) -> bytes:
    """Box plot of Dice per foreground class with every case as a jittered dot and the mean as a diamond.

    ``rows`` are ``{"case": id, **case_metrics(...)}``; ``class_names[0]`` (background) is skipped.
    """
    names = [str(c) for c in class_names[1:]]
    values = [np.array([float(r[n]["dice"]) for r in rows if r.get(n, {}).get("dice") is not None]) for n in names]
    fig = Figure(figsize=(max(4.5, 1.2 + 1.3 * len(names)), 4.6))
    ax = fig.add_subplot()
    ax.set_title(f"Dice per class (n = {len(rows)} cases)")
    if not any(v.size for v in values):
        return message_figure(fig, ax, "No Dice values to plot")
    positions = np.arange(1, len(names) + 1)
    drawn = [(p, v) for p, v in zip(positions, values) if v.size]
    ax.boxplot([v for _, v in drawn], positions=[p for p, _ in drawn], widths=0.5, showfliers=False,
               medianprops={"color": "C1", "lw": 2}, boxprops={"color": "0.35"},
               whiskerprops={"color": "0.35"}, capprops={"color": "0.35"})
    rng = np.random.default_rng(seed)  # fixed jitter: the same data give the same image
    for p, v in drawn:
        ax.scatter(p + rng.uniform(-0.15, 0.15, v.size), v, s=14, color="C0", alpha=0.6, zorder=3, lw=0)
        ax.scatter([p], [v.mean()], marker="D", s=40, color="white", edgecolor="C3", lw=1.5, zorder=4)
    ax.scatter([], [], marker="D", color="white", edgecolor="C3", label="mean")
    ax.plot([], [], color="C1", lw=2, label="median")
    ax.set_xticks(positions, labels=names, rotation=30 if max(map(len, names)) > 10 else 0)
    ax.set(ylim=(-0.03, 1.03), ylabel="Dice", xlim=(0.4, len(names) + 0.6))
    ax.legend(loc="lower left")
    return to_png(fig)


@styled
def plot_froc(result: Mapping[str, Any]) -> bytes:
    """FROC curve (log x axis, 1/8 to 8 false positives per scan) with the operating points
    of ``result["fp_rates"]`` marked and the score in the title; ``result`` is from ``froc()``."""
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    score = result.get("score")
    ax.set_title("FROC" if score is None else f"FROC (score {score:.3f})")
    if result.get("sensitivity") is None:
        return message_figure(fig, ax, "FROC undefined: no reference lesions")
    rates = [float(r) for r in result["fp_rates"]]
    lo, hi = min(rates + [0.125]) / 1.5, max(rates + [8.0]) * 1.5
    fps = np.r_[0.0, result["fp_per_scan"]]
    sens = np.r_[0.0, result["sensitivity"]]
    keep = np.r_[fps[1:] != fps[:-1], True]
    # Dense sampling draws the interpolation the score uses (straight in linear FP, curved in log).
    xs = np.geomspace(lo, hi, 400)
    ax.plot(xs, np.interp(xs, fps[keep], sens[keep]), lw=2, color="C0",
            label=f"{result.get('n_scans', '?')} scans, {result.get('n_reference_lesions', '?')} lesions")
    at = [result["sensitivity_at"].get(f"{r:g}") for r in rates]
    ax.plot(rates, at, "o", ms=7, mfc="white", mec="C3", mew=2, label="operating points")
    for r, s in zip(rates, at):
        ax.annotate(f"{s:.2f}", (r, s), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(rates))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"1/{round(1 / x)}" if x < 1 else f"{x:g}"))
    rule = result.get("hit_rule", "?")
    if rule == "iou":
        rule = f"IoU ≥ {result.get('iou_threshold')}"
    ax.set(xlim=(lo, hi), ylim=(0, 1.05), xlabel="False positives per scan",
           ylabel=f"Sensitivity (hit rule: {rule})")
    ax.legend(loc="lower right")
    return to_png(fig)
