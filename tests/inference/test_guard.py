"""The input guard: foreign inputs refused (one line, exit 2), borderline ones flagged, an
in-distribution image not, thresholds that flag about the stated share of val, old runs unguarded."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from medsight.data.synthetic import synthetic_sample
from medsight.errors import ForeignInputError
from medsight.evaluation.calibrate import val_split
from medsight.inference.guard import PROFILE_FILE, InputGuard, colour_saturation, guard_of
from medsight.inference.load import load_run
from medsight.inference.predict import predict_image
from medsight.io import read_image
from medsight.io.write import write_nifti
from tests.cli.helpers import invoke


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A colour photograph stand-in: an RGB gradient with noise, as a JPEG."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    rgb = np.stack([xx * 2, yy * 2, 255 - xx], -1) + rng.integers(0, 40, (96, 128, 3))
    path = tmp_path_factory.mktemp("photo") / "holiday photo.jpg"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def test_the_profile_is_written_at_the_end_of_training(trained_run):
    profile = json.loads((trained_run / PROFILE_FILE).read_text())
    assert profile["spatial_dims"] == 2 and profile["channels"] == 1 and profile["modality"] == "CT"
    ood = profile["ood"]
    assert ood["method"] == "feature-ensemble" and ood["version"] == 2
    assert ood["refuse_threshold"] > ood["flag_threshold"] > 0
    layers = [layer["name"] for layer in ood["layers"]]
    assert layers[0] == "input" and layers[-1] == "penultimate" and len(layers) >= 4


def test_a_foreign_texture_at_the_same_intensities_scores_above_in_distribution(trained_run):
    """Speckle with each image's own mean and spread: the intensities match, the texture does not."""
    run = load_run(trained_run)
    guard = guard_of(run)
    images = val_split(run, "test").images.float()[:24]
    speckle = images.mean((2, 3), keepdim=True) + images.std((2, 3), keepdim=True) * torch.randn_like(images)
    inside, outside = guard.scores(run, images), guard.scores(run, speckle)
    assert np.median(outside) > 3 * np.median(inside)
    assert np.mean(outside > guard.ood["flag_threshold"]) >= 0.9


def test_an_old_penultimate_only_profile_still_scores_and_a_newer_one_says_so(trained_run, tmp_path, caplog):
    from medsight.errors import MedsightError
    from medsight.inference.guard import features_and_logits
    from medsight.inference.ood_score import encode_array, fit_gaussian

    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    run = load_run(old)
    val = val_split(run)
    means, precision = fit_gaussian(features_and_logits(run, val.images)[0], val.labels.numpy())
    profile = json.loads((old / PROFILE_FILE).read_text())
    profile["ood"] = {"method": "mahalanobis", "class_means": encode_array(means), "precision": encode_array(precision),
                      "flag_threshold": 1.5, "refuse_threshold": 5.0}  # version 1: no version key
    (old / PROFILE_FILE).write_text(json.dumps(profile))
    with caplog.at_level(logging.INFO, logger="medsight.inference.guard"):
        scores = guard_of(run).scores(run, val.images[:8])
    assert scores.shape == (8,) and np.all(scores > 0) and "input profile of version 1" in caplog.text
    profile["ood"]["version"] = 99
    (old / PROFILE_FILE).write_text(json.dumps(profile))
    with pytest.raises(MedsightError, match="version 99; this medsight reads up to 2: upgrade medsight or refit"):
        guard_of(run).scores(run, val.images[:2])


def test_a_colour_photo_to_the_grey_ct_run_exits_2_with_one_line(trained_run, photo, tmp_path):
    result = invoke("predict", trained_run, photo, "--out", tmp_path / "out", "--no-heatmap")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("medsight: error:")]
    assert len(errors) == 1 and str(photo) in errors[0] and "colour image" in errors[0], result.output
    assert "Traceback" not in result.output


def test_allow_foreign_predicts_and_marks_it(trained_run, photo, tmp_path):
    result = invoke("predict", trained_run, photo, "--out", tmp_path / "out", "--no-heatmap", "--allow-foreign")
    assert result.exit_code == 0, result.output
    [record] = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert record["out_of_distribution"] is True and record["needs_review"] is True
    assert "colour image" in record["foreign_override"] and isinstance(record["ood_score"], float)


def test_a_3d_nifti_to_the_2d_run_is_refused(trained_run, tmp_path):
    volume = tmp_path / "volume.nii.gz"
    write_nifti(torch.zeros(1, 16, 64, 64) - 800.0, volume)
    result = invoke("predict", trained_run, volume, "--out", tmp_path / "out", "--no-heatmap")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("medsight: error:")]
    assert len(lines) == 1 and f"{volume}: a 3D image of shape" in lines[0], result.output
    assert "the model was trained on 2D images" in lines[0]


def test_mr_to_the_ct_run_is_refused_through_the_api(trained_run):
    import medsight

    run = medsight.load(trained_run)
    with pytest.raises(ForeignInputError, match="modality MR; the model was trained on CT"):
        run.predict(get_testdata_file("MR_small.dcm"), heatmap=False)


def test_an_in_distribution_image_is_not_flagged(trained_run):
    run = load_run(trained_run)
    flags = [predict_image(run, synthetic_sample(0, "test", i)["image"], heatmap=False)[0]["out_of_distribution"]
             for i in range(10)]
    assert flags.count(False) >= 8, flags  # 5% are flagged by design: 10 of 10 would be luck


def test_at_most_twice_the_stated_share_of_val_is_flagged(trained_run):
    run = load_run(trained_run)
    guard = guard_of(run)
    share = guard.ood["flag_fraction"]
    scores = guard.scores(run, val_split(run).images)
    flagged = float(np.mean([guard.judge(s) != "ok" for s in scores]))
    assert flagged <= 2 * share and guard.ood["flagged_on_val"] <= 2 * share
    assert not any(guard.judge(s) == "refuse" for s in scores)


def test_refusal_rules_on_raw_images():
    guard = InputGuard({"spatial_dims": 2, "channels": 1, "modality": "CT", "ood": {}})
    grey_as_rgb = torch.full((3, 32, 32), 100.0)
    assert colour_saturation(grey_as_rgb.numpy()) == 0 and guard.refusal(grey_as_rgb) is None
    assert guard.refusal(torch.zeros(1, 1, 32, 32)) is None  # one slice of a volume is 2D
    assert "3D image" in guard.refusal(torch.zeros(1, 4, 32, 32))


def test_an_old_run_without_a_profile_still_predicts(trained_run, tmp_path, caplog):
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    (old / PROFILE_FILE).unlink()
    with caplog.at_level(logging.INFO, logger="medsight.inference.guard"):
        record, _, _ = predict_image(load_run(old), synthetic_sample(0, "test", 0)["image"], heatmap=False)
    assert record["label"] and "out_of_distribution" not in record
    assert "no input_profile.json" in caplog.text


def test_the_audit_row_keeps_the_reason_and_the_override(trained_run, photo, tmp_path):
    from medsight.store import open_database
    from medsight.store.audit import export_rows

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert invoke("predict", trained_run, photo, "--out", tmp_path / "a", "--no-heatmap", "--db", url).exit_code == 2
    assert invoke("predict", trained_run, photo, "--out", tmp_path / "b", "--no-heatmap", "--db", url,
                  "--allow-foreign").exit_code == 0
    refused, allowed = list(export_rows(open_database(url)))
    assert refused["refused"] and "colour image" in refused["reason"] and "holiday" not in json.dumps(refused)
    assert allowed["output"]["out_of_distribution"] is True and "colour image" in allowed["output"]["foreign_override"]


def test_scores_are_judged_against_the_two_thresholds(monkeypatch):
    from medsight.inference import guard as guard_module

    fake = InputGuard({"ood": {"flag_threshold": 1.0, "refuse_threshold": 10.0}})
    monkeypatch.setattr(fake, "scores", lambda run, images: np.array([0.5, 2.0, 100.0]))
    monkeypatch.setattr(guard_module, "guard_of", lambda run: fake)
    ok, flagged, refused = guard_module.ood_fields(None, None, [None, None, None], allow_foreign=False)
    assert ok == {"out_of_distribution": False, "ood_score": 0.5}
    assert flagged == {"out_of_distribution": True, "ood_score": 2.0}
    assert isinstance(refused, str) and "beyond the refuse threshold 10" in refused
    *_, allowed = guard_module.ood_fields(None, None, [None, None, None], allow_foreign=True)
    assert allowed["out_of_distribution"] and "refuse threshold" in allowed["foreign_override"]
    record = guard_module.apply_fields({"needs_review": False}, flagged)
    assert record["needs_review"] is True


def test_the_scores_rank_far_features_above_near_ones_and_arrays_round_trip():
    from medsight.inference.ood_score import decode_array, encode_array, energy_scores, mahalanobis_scores

    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 8))
    means, precision = train.mean(0, keepdims=True), np.linalg.inv(np.cov(train.T))
    near = mahalanobis_scores(rng.normal(size=(200, 8)), means, precision)
    far = mahalanobis_scores(rng.normal(3.0, 1.0, size=(200, 8)), means, precision)
    assert 0.7 < near.mean() < 1.3 and np.median(far) > 5 * np.median(near)  # d2 / D: ~1 inside, ~10 here
    confident, unsure = energy_scores(np.array([[10.0, 0.0], [0.0, 0.0]]))
    assert confident < unsure  # low energy = like the training data
    assert np.allclose(decode_array(encode_array(precision)), precision, rtol=1e-6)


def test_an_8_bit_png_of_a_ct_slice_is_flagged_not_refused(trained_run, tmp_path):
    from tests.inference.files import write_slice_files

    png = write_slice_files(tmp_path / "slice")["png"]
    record, _, _ = predict_image(load_run(trained_run), read_image(png), heatmap=False)
    assert record["out_of_distribution"] is True and record["needs_review"] is True
    assert "Hounsfield" in record["ood_note"]
