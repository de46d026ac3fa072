"""Largest-component post-processing: what it removes, how it is chosen on val, and when a
saved choice is used (current weights) or ignored (stale)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from scipy import ndimage

from medsight.evaluation.postprocessing import after_training_budget, choose_postprocessing
from medsight.inference.load import load_run
from medsight.inference.postprocess import POSTPROCESSING_FILE, keep_largest, largest_component_classes
from medsight.inference.segment import segment_image
from medsight.io import make_image
from tests.inference.files import SPACING, nodule_cases


def test_keep_largest_removes_the_smaller_components_of_the_chosen_class_only():
    labels = torch.zeros(1, 20, 20, dtype=torch.uint8)
    labels[0, 1:6, 1:6] = 1     # 25 px: kept
    labels[0, 10:12, 10:12] = 1  # 4 px: removed
    labels[0, 15:17, 1:3] = 2    # another class: untouched
    labels[0, 15:19, 15:19] = 2
    out = keep_largest(labels, [1])
    assert int((out == 1).sum()) == 25 and out[0, 10, 10] == 0
    assert int((out == 2).sum()) == int((labels == 2).sum())
    assert torch.equal(keep_largest(labels, []), labels)


def test_the_choice_is_made_on_val_saved_and_applied_by_segment(segmentation_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(segmentation_run, run)
    chosen = choose_postprocessing(run)
    saved = json.loads((run / POSTPROCESSING_FILE).read_text())
    assert saved["n"] == 32 and saved["checkpoint_sha256"] == chosen["checkpoint_sha256"]
    scores = saved["val_dice"]["nodule"]
    assert 0.0 <= scores["none"] <= 1.0 and 0.0 <= scores["largest_component"] <= 1.0
    # adopted exactly when it raised the mean val Dice
    assert ("nodule" in saved["largest_component"]) == (scores["largest_component"] > scores["none"])

    # forced on: two nodule slices side by side give two lesions, of which one is left
    (run / POSTPROCESSING_FILE).write_text(json.dumps({**saved, "largest_component": ["nodule"]}))
    loaded = load_run(run)
    assert largest_component_classes(run, loaded.class_names) == [1]
    with_nodule = [c for c in nodule_cases("test", 16) if c["mask"].sum() > 0]
    pair = torch.cat([with_nodule[0]["image"], with_nodule[1]["image"]], dim=-1)
    img = make_image(pair.numpy(), spacing=(SPACING, SPACING), modality="CT")
    plain = segment_image(loaded, img, postprocess=False)
    post = segment_image(loaded, img)
    assert ndimage.label(plain.labels[0].numpy() == 1)[1] >= 2  # the model finds both nodules
    assert ndimage.label(post.labels[0].numpy() == 1)[1] == 1
    assert len(post.lesions) == 1 < len(plain.lesions)
    (run / POSTPROCESSING_FILE).write_text(json.dumps({**saved, "largest_component": ["nodule"],
                                                       "checkpoint_sha256": "0" * 64}))
    assert largest_component_classes(run, loaded.class_names) == []


def test_a_budget_too_small_for_one_case_chooses_nothing_and_says_how_to_choose_it(segmentation_run, tmp_path,
                                                                                  caplog):
    run = tmp_path / "run"
    shutil.copytree(segmentation_run, run)
    with caplog.at_level("WARNING"):
        chosen = choose_postprocessing(run, budget_s=0.0)
    assert chosen["n"] == 0 and chosen["largest_component"] == [] and chosen["val_dice"] == {}
    assert chosen["val_cases"] == 32 and chosen["budget_s"] == 0.0
    assert "0 of 32 val cases" in caplog.text and "medsight calibrate RUN" in caplog.text
    saved = json.loads((run / POSTPROCESSING_FILE).read_text())  # strict JSON: no NaN for the missing scores
    assert saved["val_dice"] == {} and largest_component_classes(run, load_run(run).class_names) == []


def test_after_training_budget_is_a_share_of_the_training_budget():
    assert after_training_budget(None) is None  # a training by epochs: no limit
    assert after_training_budget(1) == 60.0  # at least a minute
    assert after_training_budget(60) == 15 * 60.0


def test_a_median_case_that_cannot_fit_the_budget_is_not_even_read(segmentation_run, tmp_path, monkeypatch, caplog):
    from medsight.evaluation import postprocessing

    run = tmp_path / "run"
    shutil.copytree(segmentation_run, run)
    seconds = postprocessing.case_seconds(load_run(run))
    assert 0.0 < seconds < 60.0  # a 2D case of the tiny run: windows x one timed batch
    monkeypatch.setattr(postprocessing, "case_seconds", lambda _: 500.0)
    monkeypatch.setattr(postprocessing, "load_items", lambda *a, **k: pytest.fail("a case was read"))
    with caplog.at_level("WARNING"):
        chosen = choose_postprocessing(run, budget_s=60.0)
    assert chosen["n"] == 0 and chosen["val_cases"] == 32
    assert "the next would take about 500 s" in caplog.text
