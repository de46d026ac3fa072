"""predict_paths: one record per input, heatmap files, folder expansion, consistent results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsight.errors import InputFileError
from medsight.inference.batch import PREDICTIONS_FILE, predict_paths
from medsight.inference.load import load_run
from medsight.inference.predict import expand_inputs, predict_image
from medsight.io import read_image

from .files import write_slice_files


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    return write_slice_files(tmp_path_factory.mktemp("slice"))


def test_one_record_per_input_with_heatmap_files(trained_run, slice_files, tmp_path):
    inputs = [slice_files["dicom"], slice_files["nifti"], slice_files["png"]]
    out = tmp_path / "preds"
    results = predict_paths(trained_run, inputs, out).results
    assert json.loads((out / PREDICTIONS_FILE).read_text()) == results
    assert [r["input"] for r in results] == [str(p) for p in inputs]
    names = load_run(trained_run).class_names
    heatmaps = set()
    for r in results:
        assert r["label"] in names
        assert set(r["probabilities"]) == set(names)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert all(0.0 <= p <= 1.0 for p in r["probabilities"].values())
        assert r["label"] == names[r["label_index"]]
        assert r["shape"] == [64, 64]
        png = Path(r["heatmap"])
        assert png.is_file() and out in png.parents
        with Image.open(png) as image:
            assert image.mode == "RGB" and image.width >= 256
        heatmaps.add(png)
    assert len(heatmaps) == 3  # one file each, none overwritten
    assert results[0]["modality"] == "CT"


def test_no_heatmap(trained_run, slice_files, tmp_path):
    [record] = predict_paths(trained_run, [slice_files["dicom"]], tmp_path, heatmaps=False).results
    assert record["heatmap"] is None and record["heatmap_method"] is None
    assert not (tmp_path / "heatmaps").exists()


def test_label_follows_the_threshold(trained_run, slice_files, tmp_path):
    [r] = predict_paths(trained_run, [slice_files["nifti"]], tmp_path, heatmaps=False).results
    assert r["threshold"] == pytest.approx(load_run(trained_run).cfg.evaluation.threshold)
    assert (r["label_index"] == 1) == (r["probabilities"]["nodule"] >= r["threshold"])


def test_probabilities_are_the_models_calibrated_softmax(trained_run, slice_files):
    run = load_run(trained_run)
    image = read_image(slice_files["nifti"])
    record, heat, x = predict_image(run, image, heatmap=False)
    assert heat is None and x.shape == (1, 64, 64)
    with torch.no_grad(), run.runtime.autocast():
        logits = run.model(torch.as_tensor(x)[None]).float()
    assert run.temperature() > 0 and run.temperature() != 1.0  # calibrated after training
    expected = torch.softmax(logits / run.temperature(), 1)[0].numpy()
    np.testing.assert_allclose([record["probabilities"][n] for n in run.class_names], expected, atol=1e-5)


def test_dicom_and_nifti_of_one_slice_agree(trained_run, slice_files, tmp_path):
    """The DICOM holds the HU rounded to integers; the diagnosis must not depend on the format."""
    dcm, nii = predict_paths(trained_run, [slice_files["dicom"], slice_files["nifti"]], tmp_path,
                             heatmaps=False).results
    assert dcm["label"] == nii["label"]
    assert dcm["probabilities"]["nodule"] == pytest.approx(nii["probabilities"]["nodule"], abs=0.02)


def test_heatmaps_do_not_change_the_probabilities(trained_run, slice_files, tmp_path):
    inputs = [slice_files["dicom"], slice_files["dicom"], slice_files["nifti"]]
    with_heat = predict_paths(trained_run, inputs, tmp_path / "a", heatmaps=True).results
    without = predict_paths(trained_run, inputs, tmp_path / "b", heatmaps=False).results
    for a, b in zip(with_heat, without):
        assert a["probabilities"]["nodule"] == pytest.approx(b["probabilities"]["nodule"], abs=1e-4)
    assert with_heat[0]["probabilities"] == with_heat[1]["probabilities"]


def test_folder_input_expands_to_its_files(trained_run, tmp_path):
    folder = tmp_path / "study"
    a = write_slice_files(folder)["dicom"]
    b = write_slice_files(folder / "more", index=1)["nifti"]
    (folder / "more" / "slice.dcm").unlink()
    (folder / "more" / "slice.png").unlink()
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: skipped
    expanded = expand_inputs([folder], spatial_dims=2)
    assert expanded == sorted([a, folder / "slice.nii.gz", folder / "slice.png", b])
    results = predict_paths(trained_run, [folder, a], tmp_path / "out", heatmaps=False).results
    assert [r["input"] for r in results] == [str(p) for p in expanded + [a]]
    assert all(r["label"] in ("nodule", "no nodule") for r in results)


def test_empty_folder_and_missing_path_are_input_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no image files"):
        expand_inputs([tmp_path / "empty"], spatial_dims=2)
    with pytest.raises(InputFileError, match="no such file") as info:
        expand_inputs([tmp_path / "missing.dcm"], spatial_dims=2)
    assert info.value.path == str(tmp_path / "missing.dcm")


def test_folder_is_one_series_for_a_3d_model(tmp_path):
    (tmp_path / "series").mkdir()
    assert expand_inputs([tmp_path / "series"], spatial_dims=3) == [tmp_path / "series"]


def test_unknown_explain_method_fails_before_writing(trained_run, slice_files, tmp_path):
    from medsight.errors import ConfigError

    with pytest.raises(ConfigError, match="saliency"):
        predict_paths(trained_run, [slice_files["dicom"]], tmp_path / "out", method="saliency").results
    assert not (tmp_path / "out" / PREDICTIONS_FILE).exists()
