"""medsight.train / load / Run.predict / Run.evaluate on a tiny classifier: the same answers as
the command line's functions, arrays as well as files, and evaluate writes nothing unless asked."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import medsight
from medsight.errors import ConfigError, InputFileError
from medsight.evaluation.evaluate import evaluate_run
from medsight.inference.batch import predict_paths


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_train_returns_the_loaded_run_with_the_overrides_applied(api_run):
    assert isinstance(api_run, medsight.Run) and api_run.task == "classification"
    assert api_run.class_names == ["no nodule", "nodule"]
    assert api_run.cfg.train.epochs == 2  # the override beat the config's 5
    history = (api_run.path / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 2
    loaded = medsight.load(api_run.path)
    assert loaded.task == "classification" and loaded.plan["class_names"] == api_run.class_names


def test_predict_a_file_gives_what_medsight_predict_records(api_run, slice_files, tmp_path):
    res = api_run.predict(slice_files["dicom"])
    assert isinstance(res, medsight.Prediction)
    [cli] = predict_paths(api_run.path, [slice_files["dicom"]], tmp_path, heatmaps=False).results
    assert res.label == cli["label"] and res.source == str(slice_files["dicom"])
    assert res.probabilities == pytest.approx(cli["probabilities"], abs=1e-5)
    assert sum(res.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert res.uncertainty == pytest.approx(cli["uncertainty"], abs=1e-5) and 0 <= res.uncertainty <= 1
    assert res.threshold == pytest.approx(api_run.cfg.evaluation.threshold)
    assert (res.label == "nodule") == (res.probabilities["nodule"] >= res.threshold)
    assert res.heatmap.shape == (64, 64) and 0.0 <= res.heatmap.min() <= res.heatmap.max() <= 1.0
    assert res.image.shape == (1, 64, 64)
    assert api_run.predict(slice_files["dicom"], heatmap=False).heatmap is None


def test_predict_arrays_and_tensors_like_the_file(api_run, slice_files):
    image = medsight.read_image(slice_files["nifti"])
    from_file = api_run.predict(slice_files["nifti"], heatmap=False)
    array = image.numpy()
    for given in (array, array[0], torch.from_numpy(array), image):  # (1, H, W), (H, W), tensor, MetaTensor
        res = api_run.predict(given, heatmap=False)
        assert res.probabilities == pytest.approx(from_file.probabilities, abs=1e-5), type(given)
        assert res.label == from_file.label
    assert api_run.predict(array[0], heatmap=False).source == "array"


@pytest.mark.parametrize("bad, problem", [
    (np.full((1, 8, 8), np.nan, np.float32), "array: contains NaN values"),
    (np.zeros(16), "array: expected a channel-first (C, H, W) or (C, D, H, W) array, got shape (16,)"),
    (np.zeros((1, 1, 2, 8, 8)), "got shape (1, 1, 2, 8, 8)"),
    (np.array([["a", "b"], ["c", "d"]]), "array: expected numbers, got an array of dtype <U1"),
    (torch.zeros(1, 0, 8), "array: empty image (shape (0, 8))"),
    (3.5, "array: expected a path, numpy array, torch tensor or MetaTensor, got float"),
    (np.zeros((1, 4, 64, 64)), "array: is 3D (shape (1, 4, 64, 64), channel first), but the model is 2D"),
])
def test_bad_arrays_are_one_line_errors(api_run, bad, problem):
    with pytest.raises(InputFileError) as err:
        api_run.predict(bad)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_a_folder_gives_one_result_per_file(api_run, slice_files):
    results = api_run.predict(slice_files["png"].parent, heatmap=False)
    assert [r.source for r in results] == sorted(str(p) for p in slice_files.values())
    assert all(isinstance(r, medsight.Prediction) for r in results)
    both = api_run.predict([slice_files["png"], slice_files["dicom"]], heatmap=False)
    assert [r.source for r in both] == [str(slice_files["png"]), str(slice_files["dicom"])]


def test_results_serialise_and_show_in_a_notebook(api_run, slice_files):
    res = api_run.predict(slice_files["png"])
    data = json.loads(res.to_json())
    assert data["label"] == res.label and data["probabilities"] == res.probabilities
    assert "heatmap" not in data and data["record"]["input"] == str(slice_files["png"])
    with_arrays = res.to_dict(arrays=True)
    assert np.asarray(with_arrays["heatmap"]).shape == (64, 64)
    html = res._repr_html_()
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<td>nodule</td>" in html and f"{res.probabilities['nodule']:.3f}" in html
    assert repr(res).startswith(f"Prediction(label={res.label!r}")


def test_evaluate_writes_nothing_unless_asked(api_run, tmp_path):
    before = _files(api_run.path)
    ev = api_run.evaluate(split="test")
    ev_target = api_run.evaluate(split="test", target_sensitivity=0.9)
    assert _files(api_run.path) == before  # no metrics.json, report or decision.json
    assert isinstance(ev, medsight.Evaluation) and ev.task == "classification" and ev.n == 16
    auc = ev["auc"]
    assert isinstance(auc, medsight.Metric) and 0.0 <= auc.ci[0] <= auc.value <= auc.ci[1] <= 1.0
    assert ev_target.details["threshold_source"].startswith("val split, target sensitivity 0.9")

    written = api_run.evaluate(split="test", write=True, out=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (tmp_path / "eval" / "report.html").is_file() and written.written == str(tmp_path / "eval")
    assert saved["auc"] == pytest.approx(ev["auc"].value) and saved["ci"]["auc"] == pytest.approx(list(auc.ci))
    direct = evaluate_run(api_run.path, split="test", out_dir=tmp_path / "direct")
    assert {k: m.value for k, m in ev.metrics.items()} == pytest.approx({k: direct[k] for k in ev.metrics})
    assert json.loads(ev.to_json())["metrics"]["auc"] == {"value": auc.value, "ci": list(auc.ci)}
    assert "<td>auc</td>" in ev._repr_html_()
    with pytest.raises(ConfigError, match="write=True"):
        api_run.evaluate(out=tmp_path / "x")


def test_the_library_installs_no_logging_handlers(api_run, slice_files):
    """Loading, predicting and evaluating leave logging as the program set it (here: untouched):
    no handler on the root logger or medsight's (libraries it imports may add their own)."""
    import subprocess
    import sys

    code = ("import logging, medsight\n"
            f"run = medsight.load({str(api_run.path)!r})\n"
            f"run.predict({str(slice_files['png'])!r}); run.evaluate()\n"
            "loggers = [logging.root] + [logging.getLogger(n) for n in logging.root.manager.loggerDict\n"
            "                            if n.partition('.')[0] == 'medsight']\n"
            "print(sum(len(getattr(lg, 'handlers', [])) for lg in loggers), logging.root.level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", str(logging_warning())], out.stderr


def logging_warning() -> int:
    import logging

    return logging.WARNING
