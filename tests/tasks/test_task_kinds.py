"""Every task kind, end to end: train a tiny run, then predict through the command line, the
Python API and one request to the service, evaluate with CIs and a report, export ONNX where the
kind exports, and predict a folder, and check what comes back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import medsight
from medsight.api.results import Evaluation
from medsight.cli import app
from medsight.service.models import load_registry
from medsight.tasks import TASKS, task_of
from medsight.training.run import train_run
from tests.cli.helpers import invoke
from tests.conftest import tiny_config, tiny_segmentation_config
from tests.data.voc_builders import write_voc
from tests.inference.files import write_slice_files
from tests.service.conftest import AUTH, client_for
from tests.training.test_detection import tiny_detection_config

assert app is not None  # the CLI module imports (its sub-commands are invoked below)


def _train(kind: str, tmp: Path) -> tuple[Path, list[Path]]:
    """A run of ``kind`` trained in seconds, and two input images it reads."""
    if kind == "detection":
        root = write_voc(tmp / "voc", {"train": 8, "val": 4, "test": 4}, size=64, per_image=2)
        cfg = tiny_detection_config(root, epochs=1)
        images = sorted((root / "JPEGImages").iterdir())[-2:]
    else:
        files = write_slice_files(tmp / "slices")
        images = [files["png"], files["nifti"]] if kind == "classification" else [files["nifti"], files["dicom"]]
        if kind == "classification":
            cfg = tiny_config(data={"synthetic": {"n_train": 48, "n_val": 16, "n_test": 16, "size": 64}},
                              model={"options": {"width": 8}}, train={"batch_size": 16, "epochs": 1})
        else:
            cfg = tiny_segmentation_config(train={"epochs": 1, "precise_bn_samples": 0},
                                           data={"synthetic": {"n_train": 16, "n_val": 8, "n_test": 8, "size": 64}},
                                           segmentation={"iterations_per_epoch": 2, "lesions": {"min_size": 20}})
    return train_run(cfg, tmp / "run"), images


@pytest.fixture(scope="module", params=sorted(TASKS))
def trained(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    run, images = _train(request.param, tmp)
    return request.param, run, images


def _check_boxes(boxes, scores, labels, shape, names):
    assert len(boxes) == len(scores) == len(labels)
    rows, cols = shape
    for (x0, y0, x1, y1), score, label in zip(boxes, scores, labels):
        assert 0 <= x0 <= x1 <= cols and 0 <= y0 <= y1 <= rows
        assert 0 <= score <= 1 and label in names
    assert list(scores) == sorted(scores, reverse=True)  # best first


def test_cli_api_and_service_agree_on_every_task_kind(trained, tmp_path):
    name, run, images = trained
    kind = task_of(json.loads((run / "plan.json").read_text()))
    assert kind.name == name and json.loads((run / "plan.json").read_text())["schema_version"] >= 1
    names = json.loads((run / "plan.json").read_text())["class_names"]

    # the command line: the kind's own predicting command; the other one refuses in one line
    out = tmp_path / "out"
    result = invoke(kind.predict_with, run, *images, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    other = "segment" if kind.predict_with == "predict" else "predict"
    refused = invoke(other, run, images[0], "--out", tmp_path / "other")
    assert refused.exit_code == 2 and f"a {name} run" in refused.stderr and len(refused.stderr.splitlines()) == 1
    if kind.predict_with == "predict":
        records = json.loads((out / "predictions.json").read_text())
        assert [r["input"] for r in records] == [str(p) for p in images]  # one entry per input, in order
    if name == "detection":
        for r in records:
            _check_boxes(r["boxes"], r["scores"], r["labels"], r["shape"], names)
            assert r["shape"] == [64, 64]
    elif name == "classification":
        for r in records:
            assert r["label"] in names and sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    else:
        masks = sorted((out / "masks").glob("*.nii.gz"))
        assert len(masks) == len(images)  # one mask per input
        assert "wrote" in result.stdout and (out / "lesions.json").is_file()

    # the Python API: the same predictions as the command line
    loaded = medsight.load(run)
    assert loaded.task == name and loaded.class_names == names
    res = loaded.predict(images[0])
    if name == "detection":
        _check_boxes(res.boxes.tolist(), res.scores.tolist(), res.labels, res.image.shape[1:], names)
        np.testing.assert_allclose(res.boxes, np.array(records[0]["boxes"]).reshape(-1, 4), atol=0.02)
    elif name == "classification":
        assert res.label == records[0]["label"]
        assert res.probabilities == pytest.approx(records[0]["probabilities"], abs=1e-3)
    else:
        assert res.mask.ndim in (2, 3) and set(np.unique(res.mask)) <= set(range(len(names)))

    # the service: one request, the same fields
    with client_for(load_registry([f"m={run}"])) as client:
        [described] = client.get("/v1/models", headers=AUTH).json()
        assert described["task"] == name and described["class_names"] == names
        png = next((p for p in images if p.suffix == ".png"), None) or images[0]
        reply = client.post("/v1/predict", files={"file": (png.name, png.read_bytes())}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["task"] == name and body["model"] == "m"
    if name == "detection":
        _check_boxes(body["boxes"], body["scores"], body["labels"], body["shape"], names)
        assert body["boxes"] == records[-1 if png == images[-1] else 0]["boxes"]
    elif name == "classification":
        assert body["label"] in names and body["mask"] is None
    else:
        assert body["mask"]["width"] > 0 and isinstance(body["lesions"], list)


def test_commands_that_do_not_apply_say_so_in_one_line(trained, tmp_path):
    """export on a detector, PACS on anything but a classifier, calibrate on anything but a
    classifier: exit 2 and one line naming the run and the task, before any work is done."""
    name, run, _ = trained
    kind = task_of(json.loads((run / "plan.json").read_text()))
    checks = [("pacs", "run", run, "1.2.3", "--url", "http://127.0.0.1:9/dicom-web", "--no-store")]
    if not kind.exports:
        checks.append(("export", run, "--format", "onnx"))
    if not kind.calibrates:
        checks.append(("calibrate", run))
    for args in checks:
        if kind.accepts("pacs run") and args[0] == "pacs":
            continue  # a classifier goes on to reach the (absent) PACS: tested in tests/pacs
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        [line] = result.stderr.splitlines()
        assert str(run) in line and name in line and "Traceback" not in line, line
    if name == "detection":
        assert "detection export is not supported" in invoke("export", run, "--format", "onnx").stderr


def _check_cis(name: str, metrics: dict) -> None:
    """The kind's headline metrics carry a 95% bootstrap interval that brackets them."""
    if name == "classification":
        pairs = [(metrics["accuracy"], metrics["ci"]["accuracy"])]
        assert metrics["ci_level"] == 0.95
    elif name == "segmentation":
        pairs = [(d["mean"], d["ci"]) for d in (metrics["mean_dice"], *metrics["dice"].values())]
        assert metrics["summary"]["ci_level"] == 0.95
    else:
        pairs = [(metrics["map"], metrics["ci"]["map"])] + [(metrics["ap"][k], ci) for k, ci in metrics["ci"]["ap"].items()]
        assert metrics["ci_level"] == 0.95 and metrics["n"] == metrics["n_images"] == 4
    for value, (low, high) in pairs:
        assert low is not None and low <= value <= high, (value, low, high)


SECTION = {"classification": "bootstrap confidence intervals", "segmentation": "Per class, with 95% bootstrap",
           "detection": "Average precision at IoU 0.5, with 95% bootstrap"}


def test_every_kind_evaluates_with_cis_exports_and_predicts_a_folder(trained, tmp_path):
    """evaluate (CLI): metrics.json with CIs and the report with the kind's section; export ONNX where
    the kind exports; the kind's predicting command on a folder: one answer per file in it."""
    name, run, images = trained
    kind = task_of(json.loads((run / "plan.json").read_text()))
    result = invoke("evaluate", run, "--out", tmp_path / "eval")
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    _check_cis(name, metrics)
    assert "[" in result.stdout  # the summary line shows an interval
    report = (tmp_path / "eval" / "report.html").read_text()
    for heading in ("<h2>Summary", SECTION[name], "<h2>Training", "<h2>Data plan"):
        assert heading in report, heading
    assert Evaluation.from_metrics(metrics, name).metrics  # the API's view of the same file

    if kind.exports:  # into a copy: the other tests predict with the PyTorch model
        copy = shutil.copytree(run, tmp_path / "run")
        exported = invoke("export", copy, "--format", "onnx")
        assert exported.exit_code == 0, (exported.output, exported.exception)
        assert (copy / "model.onnx").is_file() and json.loads((copy / "export.json").read_text())[
            "max_abs_difference"] <= 1e-4
    # (a detector refuses export in one line: test_commands_that_do_not_apply_say_so_in_one_line)

    folder = tmp_path / "inputs"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    out = tmp_path / "batch"
    result = invoke(kind.predict_with, run, folder, "--out", out, *(["--no-heatmap"] if name == "classification" else []))
    assert result.exit_code == 0, (result.output, result.exception)
    files = sorted(folder.iterdir())
    if kind.predict_with == "predict":
        records = json.loads((out / "predictions.json").read_text())
        assert [r["input"] for r in records] == [str(p) for p in files]
    else:
        assert len(list((out / "masks").glob("*.nii.gz"))) == len(files)
