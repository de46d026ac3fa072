"""The fuzz campaign's interface and its verdict on a fixed sample (the full run is by hand)."""

import json
import os
import subprocess
import sys
from pathlib import Path

# The bench runs in a fresh process (and spawns more): give it this process's import path.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fuzz_corpus import build_case, family_of  # noqa: E402


def test_corpus_is_reproducible_from_the_seed(tmp_path):
    for index in (0, 7, 123):
        a, b = tmp_path / f"a{index}", tmp_path / f"b{index}"
        a.mkdir(), b.mkdir()
        case_a, case_b = build_case(3, index, a), build_case(3, index, b)
        assert (case_a.family, case_a.detail) == (case_b.family, case_b.detail) == (family_of(3, index), case_a.detail)
        if case_a.path.is_file() and not case_a.path.is_symlink():
            assert case_a.path.read_bytes() == case_b.path.read_bytes()


def test_fixed_sample_has_no_crash_hang_traceback_or_unclear_refusal(trained_run, tmp_path):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--n", "240", "--seed", "0",
                           "--run", str(trained_run), "--cli-sample", "2", "--json", str(out), "--quiet"],
                          capture_output=True, text=True, env=ENV, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"cases", "accepted", "refused", "crashes", "hangs", "tracebacks", "unclear"} <= result.keys()
    assert result["cases"] == 240 and result["cli_cases"] == 2
    failures = {k: result[k] for k in ("crashes", "hangs", "tracebacks", "unclear")}
    assert failures == dict.fromkeys(failures, 0), result["examples"]
    assert result["accepted"] + result["refused"] == 240
    assert result["accepted"] > 20 and result["refused"] > 100  # the corpus has both kinds
    assert result["refused_by_reason"].get("too large / bomb", 0) > 0  # bombs refused by the size check
    assert len(result["families"]) >= 15
    assert "| crashes " in proc.stdout
