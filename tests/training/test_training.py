import json

import numpy as np
import pytest
import torch

from medsight.errors import ConfigError
from medsight.evaluation.evaluate import evaluate_run
from medsight.runtime.checkpoint import load_checkpoint
from medsight.training.run import train_run
from tests.conftest import tiny_config


def test_short_training_beats_chance_clearly(trained_run):
    metrics = evaluate_run(trained_run, split="test")
    assert metrics["auc"] > 0.8, metrics["auc"]
    assert metrics["ci"]["auc"][0] > 0.6
    history = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 8
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # No validation collapse between epochs: with stale BatchNorm statistics the eval-mode
    # loss reached 15-48 here while the training loss fell (training/batchnorm.py).
    assert max(row["val_loss"] for row in history) < 1.5, [row["val_loss"] for row in history]
    for name in ("config.yaml", "plan.json", "checkpoints/best.pt", "checkpoints/last.pt",
                 "training_curves.png", "metrics.json", "report.html"):
        assert (trained_run / name).is_file(), name
    plan = json.loads((trained_run / "plan.json").read_text())
    assert plan["class_names"] == ["no nodule", "nodule"] and plan["input_shape"] == [64, 64]


class _Kill(Exception):
    pass


def _kill_after(epoch_to_die: int):
    def callback(epoch, row):
        if epoch == epoch_to_die:
            raise _Kill()
    return callback


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path, precision):
    cfg = tiny_config(
        train={"epochs": 4, "precision": precision, "warmup_epochs": 1},
        data={"synthetic": {"n_train": 96, "n_val": 32, "n_test": 8, "size": 64}},
        transforms={"augment": {"rotate_degrees": 10, "flip": [1], "noise_std": 0.02, "prob": 0.5}},
    )
    full = train_run(cfg, tmp_path / "full")
    with pytest.raises(_Kill):
        train_run(cfg, tmp_path / "cut", callbacks=[_kill_after(2)])
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["epoch"] == 2
    train_run(cfg, tmp_path / "cut", resume=True)
    a = load_checkpoint(full / "checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_resume_refuses_a_changed_config_and_existing_runs(tmp_path):
    cfg = tiny_config(train={"epochs": 1}, data={"synthetic": {"n_train": 16, "n_val": 8, "n_test": 4}})
    run = train_run(cfg, tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds a run"):
        train_run(cfg, run)
    changed = cfg.model_copy(deep=True)
    changed.train.lr = 0.5
    with pytest.raises(ConfigError, match="differs"):
        train_run(changed, run, resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_run(cfg, tmp_path / "empty", resume=True)


def test_early_stopping_stops_and_best_checkpoint_is_the_kept_epoch(tmp_path):
    # lr 0 never improves after epoch 1, so patience 2 stops after epoch 3.
    cfg = tiny_config(train={"epochs": 10, "lr": 1e-12, "early_stopping": {"patience": 2}},
                      data={"synthetic": {"n_train": 32, "n_val": 16, "n_test": 4}})
    run = train_run(cfg, tmp_path / "r")
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) < 10
    best = load_checkpoint(run / "checkpoints/best.pt")
    # the best epoch of val AUC's moving average (training/early_stopping.py), flagged in the log
    smoothed = [history[0]["val_auc"]]
    for h in history[1:]:
        smoothed.append(0.3 * h["val_auc"] + 0.7 * smoothed[-1])
    assert best["epoch"] == int(np.argmax(smoothed)) + 1
    assert [h["epoch"] for h in history if h["kept"]][-1] == best["epoch"]
    assert np.allclose([h["val_auc_trend"] for h in history], smoothed)  # logged, and plotted


def test_balanced_class_weights_upweight_the_rare_class():
    from medsight.training.classification import balanced_class_weights

    w = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0]))


def test_a_segmentation_run_that_never_predicted_foreground_is_flagged():
    from medsight.training.history import collapse_warning

    collapsed = [{"epoch": e, "val_dice": 0.0, "val_dice_1": 0.0} for e in range(1, 21)]
    collapsed[3]["val_dice"] = None  # an epoch without validation does not count either way
    message = collapse_warning(collapsed, "val_dice")
    assert message is not None and "0 in all 19 epochs" in message and "model.pretrained" in message
    learnt = collapsed[:-1] + [{"epoch": 20, "val_dice": 0.01}]
    assert collapse_warning(learnt, "val_dice") is None
    assert collapse_warning([{"val_auc": 0.0}], "val_auc") is None  # classification: AUC 0 is not a collapse
    assert collapse_warning([{"val_dice": None}], "val_dice") is None
    assert collapse_warning([{"val_map": 0.0}], None) is None  # detection runs monitor nothing by name
