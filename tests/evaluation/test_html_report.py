"""Self-contained, escaped, atomically written HTML reports."""

from __future__ import annotations

import base64
import re

import pytest

import medsight
import medsight.utils.atomic
from medsight.errors import OutputFileError
from medsight.evaluation.report import HtmlReport

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # the report only checks the signature
EVIL = '<script>alert("x")</script>'


def _report() -> HtmlReport:
    report = HtmlReport(f"run {EVIL}")
    report.add_heading("Test metrics")
    report.add_metrics_table(
        {"auc": 0.91234, "accuracy": 0.8, "ece": None, "ci_level": 0.95,
         "ci": {"auc": [0.88, 0.94], "accuracy": [0.75, 0.85], "ece": [None, None]}},
        labels={"auc": "ROC AUC"},
    )
    report.add_image(f"ROC of {EVIL}", PNG)
    report.add_table([{"file": f"{EVIL}.dcm", "p": 0.5}, {"file": "b.dcm", "extra": 1e-5}], caption="Cases")
    report.add_image_grid([("case_1.dcm", PNG), (EVIL, PNG)])
    report.add_text(f"note {EVIL}\nsecond line")
    return report


def test_images_are_embedded_as_data_uris():
    html = _report().render()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 3
    assert all(base64.b64decode(u) == PNG for u in uris)


def test_user_text_is_escaped():
    html = _report().render()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # <title> and <h1>, figure caption and alt, table cell, grid caption and alt, paragraph.
    assert html.count("&lt;script&gt;") == 8


def test_no_external_resources():
    html = _report().render()
    assert "http:" not in html and "https:" not in html
    assert "url(" not in html and "@import" not in html
    assert all(src.startswith("data:") for src in re.findall(r'(?:src|href)="([^"]*)"', html))


def test_header_tables_and_section_order():
    html = _report().render()
    assert f"medsight {medsight.__version__}" in html and "Generated " in html
    assert "<th>95% CI</th>" in html
    assert "<td>ROC AUC</td><td class=\"num\">0.912</td><td class=\"num\">0.880 – 0.940</td>" in html
    assert "<td>ece</td><td>—</td><td class=\"num\">—</td>" in html
    assert "1e-05" in html  # tiny values keep their digits
    positions = [html.index(s) for s in ("<h2>Test metrics", "<figure>", "<caption>Cases", 'class="grid"', "second line")]
    assert positions == sorted(positions)


def test_write_is_atomic(tmp_path):
    path = tmp_path / "out" / "report.html"
    assert _report().write(path) == path
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_failed_write_keeps_previous_report(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(medsight.utils.atomic.os, "replace", broken_replace)
    with pytest.raises(OutputFileError, match=f"{path}: cannot write: disk full"):
        _report().write(path)
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_non_png_image_is_rejected():
    with pytest.raises(ValueError, match="PNG"):
        HtmlReport("x").add_image("jpeg", b"\xff\xd8\xff\xe0rest")


def test_image_grid_column_width():
    report = HtmlReport("grid")
    report.add_image_grid([("roc", PNG), ("pr", PNG)], min_width=440)
    html = report.render()
    assert "minmax(min(440px, 100%), 1fr)" in html
    assert html.count("<figcaption>") == 2
