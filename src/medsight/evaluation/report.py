"""Self-contained HTML reports: one file, inline CSS, images as base64 data URIs.

The report is a list of sections rendered in the order they were added, so any task
(classification, segmentation, ...) can compose its own. Every text value is
HTML-escaped because class names, file names and titles come from users; only
:meth:`HtmlReport.add_html` inserts markup verbatim.

Example::

    report = HtmlReport("medsight run: demo")
    report.add_heading("Test metrics")
    report.add_metrics_table(metrics, keys=["auc", "accuracy"])
    report.add_image("ROC curve", png_bytes)
    report.write("runs/demo/report.html")
"""

from __future__ import annotations

import base64
import html
import math
import numbers
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import medsight
from medsight.utils.atomic import write_text

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #fff; max-width: 1040px; margin: 0 auto; padding: 24px 32px 48px; }
header { border-bottom: 2px solid #d0d7de; margin-bottom: 8px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 1.8em 0 0.6em; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3, h4 { margin: 1.4em 0 0.5em; }
.meta { color: #59636e; font-size: 0.9em; margin: 0 0 12px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
figure { margin: 12px 0 20px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #59636e; font-size: 0.9em; margin-top: 4px; }
.grid { display: grid; gap: 12px; }
.grid figure { margin: 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  h2, h3, h4 { break-after: avoid; }
  figure, table, tr { break-inside: avoid; }
}
"""


class HtmlReport:
    """Builds a self-contained HTML report from sections added in order."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._sections: list[str] = []

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading; ``level`` 2-4 (level 1 is the report title)."""
        if level not in (2, 3, 4):
            raise ValueError(f"heading level must be 2, 3 or 4, got {level}")
        self._sections.append(f"<h{level}>{_esc(text)}</h{level}>")

    def add_text(self, text: str) -> None:
        """A paragraph of plain text; line breaks are kept."""
        self._sections.append(f"<p>{_esc(text).replace(chr(10), '<br>')}</p>")

    def add_html(self, fragment: str) -> None:
        """Trusted markup, inserted verbatim: never pass user-supplied text here."""
        self._sections.append(fragment)

    def add_table(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
        caption: str | None = None,
        digits: int = 3,
    ) -> None:
        """A table with one row per mapping; columns default to all keys in first-seen order."""
        if columns is None:
            columns = list(dict.fromkeys(key for row in rows for key in row))
        body = [[row.get(col) for col in columns] for row in rows]
        self._sections.append(_table(list(columns), body, caption, digits))

    def add_metrics_table(
        self,
        metrics: Mapping[str, Any],
        keys: Sequence[str] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        caption: str | None = None,
        digits: int = 3,
    ) -> None:
        """Metric | value | CI table from a metrics dict with an optional ``ci`` mapping.

        ``keys`` default to those in ``metrics["ci"]``; ``labels`` renames rows for display.
        """
        ci: Mapping[str, Sequence[Any]] = metrics.get("ci") or {}
        if keys is None:
            keys = list(ci)
        level = metrics.get("ci_level")
        ci_header = f"{level:.0%} CI" if isinstance(level, numbers.Real) else "CI"
        rows = []
        for key in keys:
            interval = interval_text(ci.get(key), digits)
            rows.append([(labels or {}).get(key, key), metrics.get(key), _Cell(interval, numeric=True)])
        self._sections.append(_table(["Metric", "Value", ci_header], rows, caption, digits))

    def add_image(self, caption: str, png: bytes, *, alt: str | None = None) -> None:
        """A PNG figure with a caption, embedded as a data URI."""
        self._sections.append(f"<figure>{_img(png, alt or caption)}<figcaption>{_esc(caption)}</figcaption></figure>")

    def add_image_grid(self, items: Sequence[tuple[str, bytes]], *, min_width: int = 220) -> None:
        """Captioned PNGs in a responsive grid of columns at least ``min_width`` CSS pixels wide.

        The default suits thumbnails such as prediction heatmaps; use about 440 for plots
        that need to stay legible (two per row on a laptop).
        """
        cells = "".join(
            f"<figure>{_img(png, caption)}<figcaption>{_esc(caption)}</figcaption></figure>"
            for caption, png in items
        )
        columns = f"repeat(auto-fill, minmax(min({int(min_width)}px, 100%), 1fr))"
        self._sections.append(f'<div class="grid" style="grid-template-columns: {columns}">{cells}</div>')

    def render(self) -> str:
        """The complete HTML document."""
        generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        return "\n".join([
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="medsight {_esc(medsight.__version__)}">',
            f"<title>{_esc(self.title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<header><h1>{_esc(self.title)}</h1>",
            f'<p class="meta">Generated {_esc(generated)} by medsight {_esc(medsight.__version__)}</p></header>',
            "<main>",
            *self._sections,
            "</main>",
            "</body>",
            "</html>",
            "",
        ])

    def write(self, path: str | Path) -> Path:
        """Write the report atomically (a crash never leaves a half-written file); return the path."""
        path = Path(path)
        write_text(path, self.render())
        return path


def interval_text(ci: Sequence[Any] | None, digits: int = 3) -> str:
    """``low – high`` of a confidence interval, ``—`` where it is missing or undefined."""
    low, high = (list(ci or []) + [None, None])[:2]
    return "—" if low is None or high is None else f"{_fmt(low, digits)} – {_fmt(high, digits)}"


@dataclass(frozen=True)
class RunPage:
    """What a run report's sections read: where the evaluation wrote, the run it measured, its
    metrics, and the run's ``plan.json`` and saved ``config.yaml`` (an ensemble: its first member's)."""

    out_dir: Path
    run_dir: Path
    metrics: Mapping[str, Any]
    plan: Mapping[str, Any]
    config: Mapping[str, Any]


class _Cell:
    """Pre-formatted cell text, escaped on output but not reformatted."""

    def __init__(self, text: str, numeric: bool = False) -> None:
        self.text, self.numeric = text, numeric


def _table(header: list[str], rows: list[list[Any]], caption: str | None, digits: int) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(value, digits) for value in row) + "</tr>" for row in rows)
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _td(value: Any, digits: int) -> str:
    if isinstance(value, _Cell):
        numeric, text = value.numeric, value.text
    else:
        numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
        text = _fmt(value, digits)
    return f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>"


def _fmt(value: Any, digits: int) -> str:
    """Display text for a cell: fixed decimals for ordinary floats, '—' for missing values."""
    if value is None:
        return "—"
    if isinstance(value, bool) or isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "—"
        # Tiny or huge values (learning rates, voxel counts) would lose all digits in fixed notation.
        if value != 0 and not 10 ** -digits <= abs(value) < 10**6:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _img(png: bytes, alt: str) -> str:
    if not png.startswith(_PNG_MAGIC):
        raise ValueError("image is not a PNG")
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)
