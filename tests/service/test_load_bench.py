"""bench/service_load.py end to end on a small load (the real 16-client run is by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_bench_answers_every_input_as_expected(trained_run, tmp_path):
    out = tmp_path / "load.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "service_load.py"), str(trained_run),
                           "--clients", "4", "--requests", "44", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "latency ms" in proc.stdout and "server RSS" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["requests"] == 44 and summary["unexpected"] == {}
    assert summary["server_5xx_other_than_503"] == 0
    assert {"200", "400", "401", "413", "415", "422"} <= set(summary["by_status"])
    assert summary["rss_mib"]["peak"] > 0 and summary["latency_ms"]["p50"] > 0
