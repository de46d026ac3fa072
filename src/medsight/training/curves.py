"""The training-curve figure of a run's per-epoch metric log (``training_curves.png``)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator

from medsight.training.early_stopping import TREND
from medsight.utils.figures import message_figure, styled, to_png


@styled
def plot_training_curves(history: Sequence[Mapping[str, Any]], monitor: str = "val_loss") -> bytes:
    """Losses, validation metrics (``val_*``) and learning rate per epoch; missing keys are gaps.

    A dotted line marks the epoch training kept as ``best.pt``: the last row logged as ``kept``
    (``early_stopping.py``); in a log from before that flag, the best ``monitor`` value. The
    monitor's moving average, which that choice is made on, is drawn dashed beside it.
    """
    rows = [r for r in history if isinstance(r, Mapping)]
    trend = f"{monitor}{TREND}"
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if _has_numbers(rows, k) and not k.endswith(TREND)]  # first-seen order
    losses = [k for k in keys if k == "loss" or k.endswith("_loss")]
    metrics = [k for k in keys if k.startswith("val_") and k not in losses and not k.endswith("_se")]
    # (keys, relative height, y label); the learning-rate panel is deliberately small.
    panels = [(ks, h, label) for ks, h, label in (
        (losses, 3.0, "Loss"), (metrics, 3.0, "Validation metric"), (["lr"] if "lr" in keys else [], 1.4, "Learning rate")
    ) if ks]
    if not panels:
        fig = Figure(figsize=(7, 3))
        return message_figure(fig, fig.add_subplot(), "No training history to plot")
    epochs = np.array([_number(r.get("epoch")) for r in rows])
    if np.isnan(epochs).any():
        epochs = np.arange(1, len(rows) + 1, dtype=float)
    fig = Figure(figsize=(7.5, 1.0 + sum(h for _, h, _ in panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [h for _, h, _ in panels]})[:, 0]
    for ax, (panel_keys, _, ylabel) in zip(axes, panels):
        for key in panel_keys:
            values = np.array([_number(r.get(key)) for r in rows])
            ok = np.isfinite(values)  # plot only recorded epochs so sparse metrics still form lines
            line, = ax.plot(epochs[ok], values[ok], "o-" if ok.sum() <= 30 else "-", ms=3, lw=1.6,
                            label=key.replace("_", " "))
            if key == monitor and _has_numbers(rows, trend):
                smooth = np.array([_number(r.get(trend)) for r in rows])
                fine = np.isfinite(smooth)
                ax.plot(epochs[fine], smooth[fine], "--", lw=1.2, color=line.get_color(), alpha=0.8,
                        label=f"{key.replace('_', ' ')}, moving average (picks best.pt)")
            if key == "lr" and values[ok].min() > 0:
                ax.set_yscale("log")
                # Ticks at 1, 2 and 5 per decade: labelled but not crowding the small panel.
                ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.set_ylabel(ylabel)
        if panel_keys != ["lr"]:
            ax.legend(loc="best")
    if monitor in keys:
        tracked = np.array([_number(r.get(monitor)) for r in rows])
        if np.isfinite(tracked).any():
            best = epochs[_kept_index(rows, monitor)]
            for ax in axes:
                ax.axvline(best, ls=":", lw=1, color="0.45")
            # Label on the side of the line with more room so it stays inside the axes.
            left = best > (epochs.min() + epochs.max()) / 2
            axes[0].annotate(f"kept as best.pt (epoch {best:g})", (best, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(-4 if left else 4, -12), textcoords="offset points",
                             ha="right" if left else "left", fontsize=8, color="0.35")
    axes[0].set_title("Training curves")
    axes[-1].set_xlabel("Epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.align_ylabels(axes)
    return to_png(fig)


def _kept_index(rows: Sequence[Mapping[str, Any]], monitor: str) -> int:
    flagged = [i for i, row in enumerate(rows) if row.get("kept") is True]
    if flagged:
        return flagged[-1]
    values = np.array([_number(row.get(monitor)) for row in rows])
    return int(np.nanargmin(values) if monitor.endswith("loss") else np.nanargmax(values))


def _number(value: Any) -> float:
    """A finite-or-NaN float for numeric history values; NaN for missing or non-numeric ones."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return math.nan
    return float(value)


def _has_numbers(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(math.isfinite(_number(r.get(key))) for r in rows)
