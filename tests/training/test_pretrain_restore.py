"""Restorative pretraining (``pretrain.method: restore``): a whole U-Net learns to restore
distorted images, and the planner's segmentation net fine-tuned from it gets every layer but
its output layers from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.config import config_from_dict
from medsight.errors import ConfigError
from medsight.runtime.checkpoint import load_checkpoint
from medsight.training.run import train_run
from medsight.transforms.restore import Distortions
from tests.cli.helpers import invoke
from tests.conftest import tiny_segmentation_config

SYNTHETIC = {"dataset": "synthetic", "synthetic": {"n_train": 32, "n_val": 8, "n_test": 8, "size": 32,
                                                   "nodule_fraction": 0.7}}


def restore_config(**sections):
    raw = {"task": "pretrain", "data": SYNTHETIC,
           "transforms": {"intensity": "window", "window": {"preset": "lung"}},
           "pretrain": {"method": "restore"},
           "train": {"epochs": 6, "batch_size": 8, "warmup_epochs": 0, "precise_bn_samples": 0, "precision": "fp32",
                     "threads": 1}}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    return train_run(restore_config(), tmp_path_factory.mktemp("restore") / "run")


def test_distortions_change_blocks_keep_the_input_and_repeat_under_a_seed():
    images = torch.rand(4, 1, 40, 48)
    kept = images.clone()
    distort = Distortions((40, 48))
    distort.seed(3)
    first = distort(images)
    assert first.shape == images.shape and torch.equal(images, kept)  # the target is left as it was
    changed = (first != images).float().mean(dim=(1, 2, 3))
    assert (changed > 0.01).sum() >= 3, changed  # cut-outs and shuffles, in (almost) every image
    distort.seed(3)
    assert torch.equal(distort(images), first)
    distort.seed(4)
    assert not torch.equal(distort(images), first)
    volumes = torch.rand(2, 1, 16, 20, 12)
    assert Distortions((16, 20, 12))(volumes).shape == volumes.shape


def test_the_restoration_loss_falls_and_the_plan_names_the_planned_unet(restored):
    rows = [json.loads(line) for line in (restored / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    # a random U-Net's output is far from the image; six epochs of 4 steps halve the error
    assert rows[-1]["val_loss"] < 0.5 * rows[0]["val_loss"], [r["val_loss"] for r in rows]
    plan = json.loads((restored / "plan.json").read_text())
    assert plan["task"] == "pretrain" and plan["method"] == "restore" and "feature_dim" not in plan
    planned = plan["planned"]
    assert planned["model.name"] == "dynunet" and planned["model.options.deep_supervision"] is False
    assert planned["model.options.strides"] == [[1, 1], [2, 2], [2, 2], [2, 2]]  # 32 px down to 4
    state = load_checkpoint(restored / "checkpoints/last.pt")["model"]
    assert state["output_block.conv.conv.weight"].shape[0] == 1  # one output channel per input channel
    from PIL import Image

    with Image.open(restored / "restoration.png") as figure:  # 4 val images x (distorted, restored, original)
        assert figure.format == "PNG" and figure.height > figure.width


def test_the_restoration_figure_draws_the_middle_slice_of_volumes():
    from medsight.training.pretrain import restoration_png

    volumes = torch.rand(2, 1, 8, 12, 10)
    png = restoration_png(volumes, volumes, volumes)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_the_planned_segmentation_net_fine_tunes_from_it_with_every_layer_but_its_outputs(restored, tmp_path):
    cfg = tiny_segmentation_config(
        data=SYNTHETIC, model={"name": None, "options": {}, "pretrained": str(restored)},
        train={"epochs": 1, "batch_size": 4, "precise_bn_samples": 0, "precision": "fp32", "threads": 1,
               "lr": None, "optimizer": None},
        segmentation={"iterations_per_epoch": 2})
    run = train_run(cfg, tmp_path / "seg")
    plan = json.loads((run / "plan.json").read_text())
    loaded = plan["pretrained"]
    assert plan["planned"]["model.name"] == "dynunet" and loaded["source_task"] == "pretrain"
    assert loaded["fraction"] > 0.95, loaded  # encoder and decoder; not the encoder alone
    state = load_checkpoint(run / "checkpoints/last.pt")["model"]
    # the output layers, each under its own name and DynUNet's skip_layers alias, and nothing else
    outputs = [k for k in state if any(part in k for part in ("output_block", "deep_supervision_heads", "super_head"))]
    assert loaded["n_fresh"] == len(outputs) == 10 and set(loaded["fresh"]) <= set(outputs)
    assert plan["planned"]["train.lr"] == pytest.approx(2e-3)  # self-supervised: the full rate


def test_restore_with_a_classifier_or_embed_of_a_restore_run_is_one_line(restored, tmp_path):
    with pytest.raises(ConfigError, match="restore trains an image-to-image net.*resnet18-small"):
        train_run(restore_config(model={"name": "resnet18-small"}), tmp_path / "cls")
    from tests.inference.files import write_slice_files

    files = write_slice_files(tmp_path / "slices")
    result = invoke("embed", restored, files["nifti"], "--out", tmp_path / "e")
    assert result.exit_code != 0 and not (tmp_path / "e/embeddings.npy").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "restore pretraining run" in lines[0] and "simclr" in lines[0], result.stderr


def test_a_restore_run_reloads_as_it_trained(restored):
    from medsight.inference.load import load_run

    run = load_run(restored, prefer_onnx=False, encoder=True)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = run.model(x)
    assert out.shape == x.shape and np.isfinite(out.numpy()).all()


def test_3d_restore_pretraining_plans_a_3d_unet(tmp_path):
    from tests.training.test_pretrain import write_volumes_npz

    result = invoke("pretrain", "--data", write_volumes_npz(tmp_path), "--out", tmp_path / "run",
                    "--set", "pretrain.method=restore", "--set", "train.epochs=1", "--set", "train.precision=fp32")
    assert result.exit_code == 0, (result.output, result.exception)
    plan = json.loads((tmp_path / "run/plan.json").read_text())
    assert plan["spatial_dims"] == 3 and plan["planned"]["model.options.strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    row = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])


def test_the_planned_unet_halves_the_input_exactly_at_every_level():
    from medsight.training.pretrain import restore_plan

    cfg = config_from_dict({"task": "pretrain"})
    assert restore_plan(cfg, (28, 28), 64)["model.options.strides"] == [[1, 1], [2, 2], [2, 2]]  # 28 -> 7
    assert restore_plan(cfg, (160, 192), 64)["train.batch_size"] == 4  # the segmentation planner's batch
    assert restore_plan(cfg, (28, 28), 64)["train.batch_size"] == 64  # not 167
    with pytest.raises(ConfigError, match="even input sides, got 27x28"):
        restore_plan(cfg, (27, 28), 64)
