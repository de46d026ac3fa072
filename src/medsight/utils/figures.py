"""The figures' shared base: one style, PNG bytes, and a message where a curve cannot be drawn.

Figures are built on :class:`matplotlib.figure.Figure` and rendered by the Agg canvas
instead of through ``pyplot``: nothing enters pyplot's global figure registry, so no
figure needs closing, none can leak, and no GUI backend is ever selected.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STYLE = {
    "savefig.dpi": 120,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
}
styled = mpl.rc_context(STYLE)  # decorates every plotting function


def message_figure(fig: Figure, ax: Any, message: str) -> bytes:
    """Replace the axes' content by a centred explanation (for curves that cannot be drawn)."""
    title = ax.get_title()
    ax.cla()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11, color="0.3",
            transform=ax.transAxes)
    return to_png(fig)


def to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # render with Agg whatever the global backend is
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    return buf.getvalue()
