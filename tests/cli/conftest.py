"""Fixtures for the command-line tests: one run trained through the CLI, input files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import TINY_YAML, invoke
from tests.inference.files import write_slice_files


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


@pytest.fixture(scope="session")
def cli_run(tiny_yaml, tmp_path_factory) -> Path:
    """A run trained through the command line (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", tiny_yaml, "--set", "train.epochs=1", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert str(out) in result.stdout
    return out


@pytest.fixture(scope="session")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    return write_slice_files(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def run_copy(cli_run, tmp_path) -> Path:
    return Path(shutil.copytree(cli_run, tmp_path / "run"))


