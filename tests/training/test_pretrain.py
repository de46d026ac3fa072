"""Self-supervised pretraining: the contrastive loss falls, resume continues, the run folder is a
pretrain run whose encoder weights fit the classifier of the same model by name and shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.config import config_from_dict
from medsight.models import build_model
from medsight.runtime.checkpoint import load_checkpoint
from medsight.training.run import train_run
from tests.cli.helpers import invoke


def pretrain_config(**train):
    return config_from_dict({
        "task": "pretrain",
        "data": {"dataset": "synthetic", "synthetic": {"n_train": 48, "n_val": 8, "n_test": 4, "size": 32}},
        "transforms": {"intensity": "window", "window": {"preset": "lung"}},
        "model": {"name": "resnet18-small", "options": {"width": 4}},
        "pretrain": {"projection_dim": 16},
        "train": {"epochs": 8, "batch_size": 16, "lr": 0.003, "warmup_epochs": 0, "precise_bn_samples": 0,
                  "precision": "fp32", **train},
    })


class _Kill(Exception):
    pass


def _kill_after(n):
    def callback(epoch, row):
        if epoch == n:
            raise _Kill()
    return callback


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return train_run(pretrain_config(), tmp_path_factory.mktemp("ssl") / "run")


def test_the_contrastive_loss_falls_and_the_plan_says_pretrain(pretrained):
    rows = [json.loads(line) for line in (pretrained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows]
    assert len(losses) == 8  # 8 epochs x 3 batches: 24 steps
    # NT-Xent of 16 images starts near log(31) = 3.43; a 4-channel-wide ResNet moves it slowly
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.03 and min(losses) < losses[0], losses
    plan = json.loads((pretrained / "plan.json").read_text())
    assert plan["task"] == "pretrain" and plan["method"] == "simclr" and plan["projection_dim"] == 16
    assert (pretrained / "checkpoints/last.pt").is_file() and (pretrained / "checkpoints/best.pt").is_file()


def test_the_encoder_weights_fit_the_classifier_of_the_same_model_by_name_and_shape(pretrained):
    state = load_checkpoint(pretrained / "checkpoints/last.pt")["model"]
    classifier = build_model("resnet18-small", 1, 2, 2, width=4).state_dict()
    head = {k for k in classifier if k.startswith("fc.")}
    assert set(classifier) - set(state) == head  # every layer but the class-score head
    assert {k for k in set(state) - set(classifier)} == {f"projection.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    assert all(state[k].shape == classifier[k].shape for k in set(classifier) - head)


def test_resume_continues_from_the_saved_epoch(tmp_path):
    cfg = pretrain_config(epochs=2)
    with pytest.raises(_Kill):
        train_run(cfg, tmp_path / "cut", callbacks=[_kill_after(1)])
    cut = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")
    assert cut["epoch"] == 1
    train_run(cfg, tmp_path / "cut", resume=True)
    done = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")
    assert done["epoch"] == 2 and len(done["history"]) == 2
    assert done["history"][:1] == cut["history"]  # the first epoch kept, the second added
    assert not torch.equal(done["model"]["projection.0.weight"], cut["model"]["projection.0.weight"])


def test_predict_evaluate_export_serve_on_a_pretrain_run_are_one_line(pretrained, tmp_path):
    for args in (("predict", pretrained, tmp_path / "x.png", "--out", tmp_path / "p"),
                 ("evaluate", pretrained), ("export", pretrained), ("calibrate", pretrained),
                 ("serve", pretrained, "--open", "--port", "1")):  # refused before it listens
        result = invoke(*args)
        assert result.exit_code == 2, (args[0], result.output, result.exception)
        assert len(result.stderr.strip().splitlines()) == 1 and "a pretrain run" in result.stderr, args[0]
        assert f"`medsight {args[0]}` does not take pretrain runs" in result.stderr
        assert "model.pretrained=" in result.stderr
    assert not (pretrained / "model.onnx").exists()


def write_volumes_npz(folder):
    """Random 16^3 uint8 volumes as a MedMNIST-style npz (8 train, 4 val, 2 test); its path."""
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (n, 16, 16, 16), dtype=np.uint8)
              for s, n in (("train", 8), ("val", 4), ("test", 2))}
    arrays.update({f"{s}_labels": np.zeros((len(arrays[f"{s}_images"]), 1), np.uint8) for s in ("train", "val", "test")})
    np.savez(folder / "vol3d.npz", **arrays)
    return folder / "vol3d.npz"


def test_3d_pretraining_smoke(tmp_path):
    result = invoke("pretrain", "--data", write_volumes_npz(tmp_path), "--out", tmp_path / "run",
                    "--set", "train.epochs=1", "--set", "train.batch_size=4", "--set", "model.options.width=4",
                    "--set", "train.precise_bn_samples=0", "--set", "pretrain.projection_dim=8",
                    "--set", "train.precision=fp32")
    assert result.exit_code == 0, (result.output, result.exception)
    plan = json.loads((tmp_path / "run/plan.json").read_text())
    assert plan["task"] == "pretrain" and plan["spatial_dims"] == 3 and plan["input_shape"] == [16, 16, 16]
    row = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]
    assert state["projection.2.weight"].shape == torch.Size([8, plan["feature_dim"]])


def test_embed_reads_the_encoder_of_a_pretrain_run(pretrained, tmp_path):
    from tests.inference.files import write_slice_files

    files = write_slice_files(tmp_path / "slices")
    result = invoke("embed", pretrained, files["nifti"], files["dicom"], "--out", tmp_path / "e")
    assert result.exit_code == 0, (result.output, result.exception)
    vectors = np.load(tmp_path / "e/embeddings.npy")
    plan = json.loads((pretrained / "plan.json").read_text())
    assert vectors.shape == (2, plan["feature_dim"])  # the encoder's output, not the projection's
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > 0.99  # the same slice as NIfTI and as DICOM
