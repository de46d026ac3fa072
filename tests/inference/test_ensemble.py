"""Ensembles: identical members equal one model; mismatched members are refused; folds train."""

import json
import shutil

import pytest
import torch

from medsight.errors import ConfigError
from medsight.evaluation.evaluate import evaluate_run
from medsight.inference.load import load_run
from medsight.runtime.ensemble_folder import ENSEMBLE_FILE, write_ensemble


def test_an_ensemble_of_identical_models_equals_one_model(trained_run, tmp_path):
    twin = shutil.copytree(trained_run, tmp_path / "twin")
    ens = write_ensemble(tmp_path / "ens", [trained_run, twin])
    single, both = load_run(trained_run), load_run(ens)
    assert len(both.members) == 2 and both.class_names == single.class_names
    x = torch.rand(5, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert single.temperature() != 1.0  # members are averaged on their calibrated scale
    p1 = single.probabilities(x).mean(0)
    p2 = both.probabilities(x).mean(0)
    assert torch.allclose(p1, p2, atol=1e-5)

    metrics = evaluate_run(ens, split="test")
    alone = evaluate_run(trained_run, split="test", out_dir=tmp_path / "alone")
    assert metrics["auc"] == pytest.approx(alone["auc"], abs=1e-6)
    assert [m["auc"] for m in metrics["members"]] == pytest.approx([alone["auc"]] * 2, abs=1e-6)
    assert "Ensemble and its members" in (ens / "report.html").read_text()


def test_members_must_agree_and_be_two_or_more(trained_run, tmp_path):
    with pytest.raises(ConfigError, match="at least two"):
        write_ensemble(tmp_path / "e1", [trained_run])
    other = shutil.copytree(trained_run, tmp_path / "other")
    plan = json.loads((other / "plan.json").read_text())
    plan["class_names"] = ["a", "b", "c"]
    (other / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match="class_names"):
        write_ensemble(tmp_path / "e2", [trained_run, other])
    assert not (tmp_path / "e2" / ENSEMBLE_FILE).exists()


@pytest.mark.slow
def test_train_folds_through_the_cli_makes_an_ensemble(tmp_path):
    from tests.cli.helpers import invoke

    out = tmp_path / "cv"
    result = invoke("train", "--data", _tiny_npz(tmp_path), "--minutes", "0.3", "--folds", "2",
                    "--set", "model.options={width: 8}", "--out", out)
    assert result.exit_code == 0, result.output
    members = json.loads((out / ENSEMBLE_FILE).read_text())["members"]
    assert members == ["fold0", "fold1"]
    val0 = set(json.loads((out / "fold0" / "plan.json").read_text())["n_items"])
    assert val0 == {"train", "val"}
    loaded = load_run(out)
    assert loaded.engine.name.startswith("ensemble of 2")


def _tiny_npz(folder):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 100, (n, 28, 28), dtype=np.uint8)
        images[labels == 1, 10:18, 10:18] = 250
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None].astype(np.uint8)
    path = folder / "tinymnist.npz"
    np.savez(path, **arrays)
    return path
