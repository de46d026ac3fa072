"""Segmentation training end to end: the tiny U-Net learns the synthetic nodules, the run folder
records what was planned, a killed run resumes to the uninterrupted run's weights, and a user's
own manifest trains (or fails in one line naming the bad file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight.config import save_config
from medsight.io.write import write_nifti
from medsight.runtime.checkpoint import load_checkpoint
from medsight.runtime.run_folder import read_config
from medsight.training.history import read_history
from medsight.training.run import train_run
from tests.cli.helpers import assert_user_error, invoke
from tests.conftest import tiny_segmentation_config
from tests.inference.files import nodule_cases, write_nodule_manifest

# Timing keys differ between any two runs; everything else in a history row must not.
TIMING = ("seconds", "train_images_per_second")


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def test_the_tiny_unet_learns_the_nodules(segmentation_run):
    history = read_history(segmentation_run)
    assert [row["epoch"] for row in history] == list(range(1, 7))
    dice = [row["val_dice"] for row in history]
    # Pooled validation Dice (true and false positives summed over the 32 slices), so an
    # all-background prediction scores exactly 0. Measured on an AMD EPYC: 0.00 for the first
    # three epochs, then 0.45, 0.57, 0.64 (bf16) and 0.46, 0.59, 0.65 (fp32).
    assert max(dice) > 0.45, dice
    assert dice[-1] > dice[0] + 0.4, dice
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]  # measured 1.65 -> 0.47
    # best.pt, the checkpoint inference loads, is the epoch of the best validation Dice
    best = load_checkpoint(segmentation_run / "checkpoints" / "best.pt")
    assert best["epoch"] == int(np.argmax(dice)) + 1
    assert best["monitor"] == "val_dice" and best["value"] == pytest.approx(max(dice))


def test_the_run_folder_records_the_plan(segmentation_run):
    plan = json.loads((segmentation_run / "plan.json").read_text())
    assert plan["task"] == "segmentation"
    assert plan["class_names"] == ["background", "nodule"]
    assert plan["in_channels"] == 1 and plan["spatial_dims"] == 2
    assert plan["input_shape"] == [64, 64]  # the whole 64 x 64 slice fits one patch
    assert plan["n_items"] == {"train": 160, "val": 32}
    fp = plan["fingerprint"]
    assert fp["modality"] == "CT" and fp["spacing_median"] == [5.4688, 5.4688]  # 350 mm / 64
    assert 0.0 < fp["class_fractions"]["nodule"] < 0.05  # small lesions: why patches oversample them
    # the saved config is the resolved one: planned keys filled in, what the config set kept
    cfg = read_config(segmentation_run)
    assert cfg.task == "segmentation" and cfg.train.monitor == "val_dice"
    assert cfg.segmentation.patch_size == [64, 64]
    assert cfg.model.name == "unet" and cfg.transforms.window.preset == "lung"
    assert cfg.segmentation.iterations_per_epoch == 20 and cfg.train.batch_size == 16


def _short_config():
    """Three epochs of three batches on 16 slices: about a second per run."""
    return tiny_segmentation_config(
        train={"epochs": 3, "batch_size": 8, "precise_bn_samples": 16, "precision": "fp32", "threads": 1},
        data={"synthetic": {"n_train": 16, "n_val": 4, "n_test": 4, "size": 64, "nodule_fraction": 0.7}},
        segmentation={"iterations_per_epoch": 3},
    )


def test_a_killed_run_resumed_from_the_command_line_ends_as_if_never_stopped(tmp_path):
    cfg = _short_config()
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    def kill_after_the_first_epoch(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_run(cfg, killed, callbacks=[kill_after_the_first_epoch])
    assert [row["epoch"] for row in read_history(killed)] == [1]
    config = tmp_path / "seg.yaml"
    save_config(cfg, config)
    result = invoke("train", config, "--out", killed, "--resume")
    assert result.exit_code == 0, (result.output, result.exception)
    assert str(killed) in result.stdout

    train_run(cfg, whole)
    resumed_rows, whole_rows = read_history(killed), read_history(whole)
    assert [row["epoch"] for row in resumed_rows] == [1, 2, 3]
    for a, b in zip(resumed_rows, whole_rows):
        assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    # patches, augmentation and BatchNorm re-estimation are reseeded per epoch: bit-exact weights
    resumed = load_checkpoint(killed / "checkpoints" / "last.pt")["model"]
    uninterrupted = load_checkpoint(whole / "checkpoints" / "last.pt")["model"]
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key


def test_resuming_a_run_that_was_never_started_is_one_line(tmp_path):
    config = tmp_path / "seg.yaml"
    save_config(_short_config(), config)
    assert_user_error(invoke("train", config, "--out", tmp_path / "none", "--resume"),
                      tmp_path / "none", "nothing to resume")


@pytest.fixture
def manifest(tmp_path) -> Path:
    cases = {"train": nodule_cases("train", 12), "val": nodule_cases("val", 4), "test": nodule_cases("test", 4)}
    return write_nodule_manifest(tmp_path / "data", cases)


def test_train_data_manifest_with_masks_trains_a_segmentation_model(manifest, tmp_path):
    """A manifest with a mask column and no label column can only mean segmentation."""
    out = tmp_path / "run"
    narrow = "model.options.filters=[8,16,16,16,16]"  # the planned 32..320 take seconds per step
    result = invoke("train", "--data", manifest, "--out", out, "--set", "train.epochs=1", "--set", narrow,
                    "--set", "segmentation.iterations_per_epoch=2", "--set", "train.batch_size=4",
                    "--set", "train.precise_bn_samples=0")
    assert result.exit_code == 0, (result.output, result.exception)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["task"] == "segmentation"
    assert plan["class_names"] == ["background", "1"]  # no names in a manifest: 0..K from the masks
    assert plan["n_items"] == {"train": 12, "val": 4}
    assert plan["planned"]["model.name"] == "dynunet" and len(plan["planned"]["model.options.strides"]) == 5
    assert "val_dice" in read_history(out)[0]


def test_a_mask_only_manifest_in_a_classification_config_is_one_line(manifest, tmp_path):
    config = tmp_path / "cls.yaml"
    config.write_text(f"data: {{dataset: manifest, path: {manifest}}}\ntrain: {{epochs: 1}}\n")
    assert_user_error(invoke("train", config, "--out", tmp_path / "run"), manifest, "task: segmentation")


def test_a_wrong_shaped_mask_in_the_manifest_is_one_line_naming_it(manifest, tmp_path):
    bad = manifest.parent / "masks" / "train005.nii.gz"
    write_nifti(torch.zeros(1, 64, 48), bad)  # its image is 64 x 64
    result = invoke("train", "--data", manifest, "--out", tmp_path / "run", "--set", "train.epochs=1")
    line = assert_user_error(result, bad)
    assert "shape" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_fingerprint_of_files_is_read_in_workers_up_to_a_voxel_budget(tmp_path, monkeypatch):
    from medsight.config import load_config
    from medsight.data.loading import LazyItems
    from medsight.data.registry import build_dataset
    from medsight.planning.segmentation import fingerprint
    from medsight.training import segmentation

    manifest = write_nodule_manifest(tmp_path, {"train": nodule_cases("train", 12), "val": nodule_cases("val", 2)})
    cfg = load_config(None, ["task=segmentation", f"data.path={manifest}", "data.dataset=manifest"])
    items = build_dataset(cfg.data, 0).split("train")
    names = ["background", "1"]
    # read in workers (12 cases), in a shuffled order: the same fingerprint as one pass here
    assert segmentation.FINGERPRINT_PARALLEL_FROM <= len(items)
    parallel = segmentation.file_fingerprint(items, cfg, names, len(items))
    assert parallel == fingerprint(LazyItems(items, cfg.data), names, len(items))
    assert parallel["n_read"] == 12
    # a set of large cases stops at the voxel budget: five 64x64 slices' worth here
    monkeypatch.setattr(segmentation, "FINGERPRINT_VOXELS", 5 * 64 * 64)
    capped = segmentation.file_fingerprint(items, cfg, names, len(items))
    assert capped["n_read"] == 5 and capped["n_cases"] == 12
