"""The ``medsight`` command as users run it: user errors, --help and demo.

User errors end with exit status 2 and ONE line on stderr naming the file and the problem.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from medsight.errors import InputFileError
from medsight.io.image import make_image
from medsight.io.write import write_nifti
from tests.cli.helpers import COMMANDS, assert_user_error, check_metrics, invoke


def _truncated_dicom(folder: Path, slice_files) -> Path:
    path = folder / "cut.dcm"
    path.write_bytes(slice_files["dicom"].read_bytes()[:700])
    return path


def _text_as_png(folder: Path, slice_files) -> Path:
    path = folder / "notes.png"
    path.write_text("patient,label\nA,1\n")
    return path


def _missing(folder: Path, slice_files) -> Path:
    return folder / "does-not-exist.dcm"


def _volume_for_2d_model(folder: Path, slice_files) -> Path:
    path = folder / "volume.nii.gz"
    write_nifti(make_image(torch.zeros(1, 4, 16, 16)), path)
    return path


BAD_INPUTS = {
    "truncated DICOM": (_truncated_dicom, "truncated"),
    "text named .png": (_text_as_png, "not an image"),
    "missing path": (_missing, "no such file"),
    "3D volume for a 2D model": (_volume_for_2d_model, "3D"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_file(cli_run, slice_files, tmp_path, case):
    make, problem = BAD_INPUTS[case]
    bad = make(tmp_path, slice_files)
    result = invoke("predict", cli_run, slice_files["nifti"], bad, "--out", tmp_path / "preds")
    line = assert_user_error(result, bad, problem)
    assert line.startswith("medsight: error: ")
    saved = tmp_path / "preds" / "predictions.json"
    if bad.exists():  # the good input is still diagnosed; the bad one is listed, not fatal
        assert [r["input"] for r in json.loads(saved.read_text())] == [str(slice_files["nifti"])]
    else:  # a missing path is caught before any work starts
        assert not saved.exists()


@pytest.mark.parametrize("case", ["truncated DICOM", "missing path"])
def test_debug_lets_the_exception_through(cli_run, slice_files, tmp_path, case):
    make, problem = BAD_INPUTS[case]
    bad = make(tmp_path, slice_files)
    result = invoke("--debug", "predict", cli_run, bad, "--out", tmp_path / "preds")
    assert result.exit_code not in (0, 2)
    assert isinstance(result.exception, InputFileError)
    assert result.exception.path == str(bad)
    assert problem in result.exception.problem
    assert "medsight: error" not in result.stderr


def test_image_with_unusable_channels_is_one_line(cli_run, tmp_path):
    bad = tmp_path / "two_channels.nii.gz"
    write_nifti(make_image(torch.rand(2, 64, 64) * 1000 - 1000), bad)
    assert_user_error(invoke("predict", cli_run, bad, "--out", tmp_path / "p"), bad)


def test_real_process_bad_input_prints_exactly_one_line(cli_run, slice_files, tmp_path):
    """Not CliRunner: the installed entry point, with its logging and warnings, in a process."""
    bad = _truncated_dicom(tmp_path, slice_files)
    proc = subprocess.run([sys.executable, "-m", "medsight.cli", "predict", str(cli_run), str(bad),
                           "--out", str(tmp_path / "p")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"medsight: error: {bad}: ") and "truncated" in lines[0], lines


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_folder_that_is_not_a_run(command, slice_files, tmp_path):
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    args = [command, not_a_run] + ([slice_files["dicom"]] if command == "predict" else [])
    assert_user_error(invoke(*args, "--out", tmp_path / "o"), not_a_run, "not a medsight run folder")


def test_unknown_explain_method(cli_run, slice_files, tmp_path):
    result = invoke("predict", cli_run, slice_files["dicom"], "--explain", "saliency", "--out", tmp_path / "p")
    assert_user_error(result, "saliency")


# --- help and demo -------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"medsight {command}" in result.stdout


def test_root_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_demo_help_shows_how_to_run_it():
    result = invoke("demo", "--help")
    assert "medsight demo --out" in result.stdout
    assert "--epochs" in result.stdout


def _check_demo_folder(out: Path, run: Path) -> None:
    assert run == out / "run"
    for name in ("config.yaml", "plan.json", "checkpoints/best.pt", "checkpoints/last.pt",
                 "metrics.json", "report.html"):
        assert (run / name).is_file(), name
    check_metrics(json.loads((run / "metrics.json").read_text()))
    report = (run / "report.html").read_text()
    assert report.lstrip().lower().startswith("<!doctype html") or "<html" in report.lower()
    predictions = json.loads((out / "predictions" / "predictions.json").read_text())
    assert predictions and all(Path(p["heatmap"]).is_file() for p in predictions)


def test_run_demo_leaves_a_finished_run_folder(tmp_path):
    from medsight.demo import run_demo

    out = tmp_path / "demo"
    run = run_demo(out, epochs=1, overrides=["data.synthetic.n_train=64", "data.synthetic.n_val=32",
                                             "data.synthetic.n_test=32"])
    _check_demo_folder(out, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 1 and cfg["data"]["synthetic"]["n_train"] == 64
    assert json.loads((run / "metrics.json").read_text())["n"] == 32


@pytest.mark.slow
def test_demo_command(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--epochs", "1")
    assert result.exit_code == 0, (result.output, result.exception)
    _check_demo_folder(out, out / "run")
    assert str(out / "run" / "report.html") in result.stdout
