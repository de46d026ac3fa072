"""kill -9 during training: resuming gives the uninterrupted run's weights and a whole run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medsight.training import trainer as trainer_module
from medsight.training.history import read_history
from medsight.training.run import train_run
from tests.conftest import tiny_config

# The bench runs in a fresh process (and spawns more): give it this process's import path.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
ROOT = Path(__file__).resolve().parents[2]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def tiny():
    return tiny_config(train={"epochs": 2, "precision": "fp32", "threads": 1},
                       data={"synthetic": {"n_train": 32, "n_val": 16, "n_test": 8}})


def test_kill_between_the_last_checkpoint_and_its_log_line(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real = trainer_module.write_history

    def killed_at_the_last_epoch(run, history):
        if len(history) == 2:
            raise Killed
        real(run, history)

    monkeypatch.setattr(trainer_module, "write_history", killed_at_the_last_epoch)
    with pytest.raises(Killed):
        train_run(tiny(), run_dir)
    monkeypatch.undo()
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 2
    train_run(tiny(), run_dir, resume=True)  # nothing left to train...
    assert [row["epoch"] for row in read_history(run_dir)] == [1, 2]  # ...but the log is whole


@pytest.mark.slow
def test_kill_resume_bench_is_bit_exact(tmp_path):
    out = tmp_path / "kill_resume.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "kill_resume.py"), "--kills", "3", "--epochs", "5",
                           "--json", str(out)], capture_output=True, text=True, env=ENV, timeout=1800, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"kills", "resumed", "bit_exact", "corrupt_files"} <= result.keys()
    assert result["kills"] == 3 and result["resumed"] >= 1
    assert result["bit_exact"] is True and result["history_equal"] is True
    assert result["corrupt_files"] == 0 and result["temp_files_left"] == []
    assert "| bit_exact | True |" in proc.stdout
