"""docs/api.md's examples run as written (doctest, in an empty folder) and README links them."""

from __future__ import annotations

import doctest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_api_doc_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False, report=True,
                              optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, capsys.readouterr().out
    assert result.attempted >= 30
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "best.pt").is_file()


def test_readme_links_the_api_doc():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/api.md)" in readme and "import medsight" in readme
