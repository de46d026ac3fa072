"""A disk that fills up during training or evaluation: one clear error, earlier files intact,
no temporary litter, and the run resumes once there is space again."""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack

import pytest
import torch

from medsight.errors import OutputFileError
from medsight.evaluation.evaluate import evaluate_run
from medsight.training.run import train_run
from tests.cli.helpers import TINY_YAML, assert_user_error, invoke
from tests.conftest import tiny_config
from tests.full_disk import disk_full, temporaries


def tiny(epochs: int):
    return tiny_config(train={"epochs": epochs, "precision": "fp32", "threads": 1},
                       data={"synthetic": {"n_train": 32, "n_val": 16, "n_test": 8}})


def test_disk_full_at_the_second_checkpoint_then_resume(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    full = ExitStack()

    def fill_the_disk(epoch, row):
        if epoch == 1:  # after epoch 1 was written completely
            full.enter_context(disk_full(monkeypatch, run_dir))

    with full, pytest.raises(OutputFileError) as info:
        train_run(tiny(3), run_dir, callbacks=[fill_the_disk])
    message = str(info.value)
    assert message.startswith(str(run_dir / "checkpoints")) and message.endswith("No space left on device")
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 1
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert temporaries(run_dir) == []

    train_run(tiny(3), run_dir, resume=True)  # space freed: it carries on from epoch 1
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 3


def test_cli_train_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    with disk_full(monkeypatch, tmp_path / "run"):
        result = invoke("train", tmp_path / "tiny.yaml", "--out", tmp_path / "run")
    assert_user_error(result, tmp_path / "run" / "config.yaml", "cannot write: No space left on device")


def test_evaluation_report_on_a_full_disk(trained_run, tmp_path, monkeypatch):
    run = shutil.copytree(trained_run, tmp_path / "run")
    evaluate_run(run, split="val")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with disk_full(monkeypatch, run, free=2000), pytest.raises(OutputFileError, match="No space left"):
        evaluate_run(run, split="test")
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after.keys() == before.keys() | ({"cases_test.csv"} & after.keys())
    assert json.loads(after["metrics.json"])  # whole: the old file or the new one, never half
    assert after["report.html"] == before["report.html"]  # the last write failed: the old report
    assert temporaries(run) == []
