"""The ``medsight`` command as users run it: train, evaluate, predict, demo, and user errors.

User errors must end with exit status 2 and ONE line on stderr naming the file and the
problem (no traceback unless ``--debug``, which lets the exception through).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from medsight.cli import app
from medsight.errors import InputFileError
from medsight.io.image import make_image
from medsight.io.write import write_nifti
from tests.inference.files import write_slice_files

METRIC_KEYS = ("auc", "accuracy", "sensitivity", "specificity", "f1")
COMMANDS = ("train", "evaluate", "predict", "demo", "deid")

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


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


@pytest.fixture(scope="module")
def cli_run(tiny_yaml, tmp_path_factory) -> Path:
    """A run trained through the command line (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", tiny_yaml, "--set", "train.epochs=1", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert str(out) in result.stdout
    return out


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    return write_slice_files(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def run_copy(cli_run, tmp_path) -> Path:
    return Path(shutil.copytree(cli_run, tmp_path / "run"))


# --- train -------------------------------------------------------------------------------

def test_train_makes_a_run_folder_with_the_override_applied(cli_run):
    saved = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1  # --set beat the file's 3
    assert saved["model"] == {"name": "resnet18-small", "spatial_dims": 2, "options": {"width": 8}}
    assert saved["data"]["synthetic"]["n_train"] == 48
    history = (cli_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1]
    for name in ("plan.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (cli_run / name).is_file(), name
    plan = json.loads((cli_run / "plan.json").read_text())
    assert plan["n_items"] == {"train": 48, "val": 16}


def test_unknown_set_key_names_it(tiny_yaml, tmp_path):
    result = invoke("train", tiny_yaml, "--set", "train.lrr=1", "--out", tmp_path / "run")
    assert_user_error(result, "train.lrr")
    assert not (tmp_path / "run").exists()


def test_set_without_equals(tiny_yaml, tmp_path):
    assert_user_error(invoke("train", tiny_yaml, "--set", "train.epochs", "--out", tmp_path / "r"),
                      "train.epochs")


def test_wrong_value_type_names_the_key(tiny_yaml, tmp_path):
    assert_user_error(invoke("train", tiny_yaml, "--set", "train.batch_size=big", "--out", tmp_path / "r"),
                      "train.batch_size")


def test_config_that_is_not_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("data: {dataset: synthetic\nmodel: [resnet\n")
    assert_user_error(invoke("train", bad, "--out", tmp_path / "r"), bad, "YAML")


def test_config_that_is_not_a_mapping_or_missing(tmp_path):
    listy = tmp_path / "list.yaml"
    listy.write_text("- train\n- evaluate\n")
    assert_user_error(invoke("train", listy, "--out", tmp_path / "r"), listy)
    assert_user_error(invoke("train", tmp_path / "nope.yaml", "--out", tmp_path / "r"), tmp_path / "nope.yaml")


def test_train_refuses_to_overwrite_a_run(tiny_yaml, run_copy):
    before = (run_copy / "checkpoints" / "last.pt").read_bytes()
    result = invoke("train", tiny_yaml, "--set", "train.epochs=1", "--out", run_copy)
    assert_user_error(result, run_copy, "--resume")
    assert (run_copy / "checkpoints" / "last.pt").read_bytes() == before


class _Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run(tiny_yaml, tmp_path):
    from medsight.config import load_config
    from medsight.training.checkpoint import load_checkpoint
    from medsight.training.run import train_run

    def stop_after_first_epoch(epoch, row):
        if epoch == 1:
            raise _Interrupt

    run = tmp_path / "run"
    cfg = load_config(tiny_yaml, ["train.epochs=2"])
    with pytest.raises(_Interrupt):
        train_run(cfg, run, callbacks=[stop_after_first_epoch])
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1

    changed = invoke("train", tiny_yaml, "--set", "train.epochs=2", "--set", "train.lr=0.1",
                     "--out", run, "--resume")
    assert_user_error(changed, run, "config differs")

    result = invoke("train", tiny_yaml, "--set", "train.epochs=2", "--out", run, "--resume")
    assert result.exit_code == 0, (result.output, result.exception)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert [row["epoch"] for row in last["history"]] == [1, 2]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_without_a_run(tiny_yaml, tmp_path):
    assert_user_error(invoke("train", tiny_yaml, "--out", tmp_path / "empty", "--resume"),
                      tmp_path / "empty", "nothing to resume")


# --- evaluate ------------------------------------------------------------------------------

def _check_metrics(metrics: dict) -> None:
    for key in METRIC_KEYS:
        value = metrics[key]
        assert value is not None and 0.0 <= value <= 1.0, key
        low, high = metrics["ci"][key]
        assert low <= value <= high, (key, low, value, high)


def test_evaluate_writes_metrics_with_cis_into_the_run(run_copy):
    result = invoke("evaluate", run_copy)
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((run_copy / "metrics.json").read_text())
    _check_metrics(metrics)
    assert metrics["n"] == 16 and metrics["split"] == "test"
    assert metrics["threshold"] == 0.5
    assert "auc" in result.stdout and "[" in result.stdout  # summary with CIs
    assert (run_copy / "report.html").is_file()
    assert not (run_copy / "decision.json").exists()


def test_evaluate_out_folder_leaves_the_run_alone(cli_run, tmp_path):
    before = sorted(p.name for p in cli_run.iterdir())
    result = invoke("evaluate", cli_run, "--split", "val", "--out", tmp_path / "eval")
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    _check_metrics(metrics)
    assert metrics["split"] == "val" and metrics["n"] == 16
    assert sorted(p.name for p in cli_run.iterdir()) == before


def test_target_sensitivity_sets_the_threshold_predict_uses(run_copy, slice_files, tmp_path):
    result = invoke("evaluate", run_copy, "--target-sensitivity", "0.9")
    assert result.exit_code == 0, (result.output, result.exception)
    decision = json.loads((run_copy / "decision.json").read_text())
    assert decision["target_sensitivity"] == 0.9
    threshold = decision["threshold"]
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["threshold"] == pytest.approx(threshold)
    assert "val" in metrics["threshold_source"]

    out = tmp_path / "preds"
    result = invoke("predict", run_copy, slice_files["dicom"], slice_files["nifti"], "--out", out, "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    for record in json.loads((out / "predictions.json").read_text()):
        assert record["threshold"] == pytest.approx(threshold)
        assert (record["label"] == "nodule") == (record["probabilities"]["nodule"] >= threshold)


@pytest.mark.parametrize("threshold, label", [(0.001, "nodule"), (0.999, "no nodule")])
def test_saved_decision_threshold_drives_the_label(run_copy, slice_files, tmp_path, threshold, label):
    (run_copy / "decision.json").write_text(json.dumps({"threshold": threshold}))
    result = invoke("predict", run_copy, slice_files["dicom"], "--out", tmp_path / "p", "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    [record] = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert record["threshold"] == threshold
    assert record["label"] == label


def test_evaluate_unknown_split_is_a_user_error(cli_run, tmp_path):
    result = invoke("evaluate", cli_run, "--split", "validation", "--out", tmp_path / "e")
    assert_user_error(result, "validation")


# --- predict -------------------------------------------------------------------------------

def test_predict_dicom_nifti_and_png(cli_run, slice_files, tmp_path):
    inputs = [slice_files["dicom"], slice_files["nifti"], slice_files["png"]]
    out = tmp_path / "preds"
    result = invoke("predict", cli_run, *inputs, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    records = json.loads((out / "predictions.json").read_text())
    assert isinstance(records, list) and len(records) == 3
    assert [r["input"] for r in records] == [str(p) for p in inputs]
    for record in records:
        assert record["label"] in ("no nodule", "nodule")
        probs = record["probabilities"]
        assert set(probs) == {"no nodule", "nodule"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        heatmap = Path(record["heatmap"])
        assert heatmap.is_file()
        with Image.open(heatmap) as image:
            assert image.format == "PNG"
        assert f"{record['input']}: {record['label']}" in result.stdout
    assert len({r["heatmap"] for r in records}) == 3


def test_predict_folder(cli_run, slice_files, tmp_path):
    out = tmp_path / "preds"
    result = invoke("predict", cli_run, slice_files["dicom"].parent, "--out", out, "--no-heatmap")
    assert result.exit_code == 0, (result.output, result.exception)
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(r["input"] for r in records) == sorted(str(p) for p in slice_files.values())


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
    assert not (tmp_path / "preds" / "predictions.json").exists()


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
    _check_metrics(json.loads((run / "metrics.json").read_text()))
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
