"""Helpers for the command-line tests: a tiny config and how to invoke and judge a run."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from medsight.cli import app

METRIC_KEYS = ("auc", "accuracy", "sensitivity", "specificity", "f1")
COMMANDS = ("train", "evaluate", "predict", "demo", "deid", "listen", "work")

# A run in a few seconds.
TINY_YAML = """\
name: tiny-cli
data:
  dataset: synthetic
  synthetic: {n_train: 48, n_val: 16, n_test: 16, size: 64}
transforms:
  intensity: window
  window: {preset: lung}
model:
  name: resnet18-small
  options: {width: 8}
train:
  epochs: 3
  batch_size: 16
evaluation:
  n_bootstrap: 200
"""



runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_user_error(result, *needles: str | Path) -> str:
    """Exit 2, exactly one stderr line holding every needle, no traceback anywhere."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def check_metrics(metrics: dict) -> None:
    """Every summary metric in [0, 1] with a CI around it."""
    for key in METRIC_KEYS:
        value = metrics[key]
        assert value is not None and 0.0 <= value <= 1.0, key
        low, high = metrics["ci"][key]
        assert low <= value <= high, (key, low, value, high)
