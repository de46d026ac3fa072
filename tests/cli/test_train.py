"""The ``medsight`` command as users run it: train, --set and --resume.

User errors end with exit status 2 and ONE line on stderr naming the file and the problem.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli.helpers import assert_user_error, invoke


def test_train_makes_a_run_folder_with_the_override_applied(cli_run):
    saved = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1  # --set beat the file's 3
    assert saved["model"] == {"name": "resnet18-small", "spatial_dims": 2, "options": {"width": 8}, "pretrained": None}
    assert saved["data"]["synthetic"]["n_train"] == 48
    history = (cli_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1]
    for name in ("plan.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (cli_run / name).is_file(), name
    plan = json.loads((cli_run / "plan.json").read_text())
    assert plan["n_items"] == {"train": 48, "val": 16}


def test_unknown_set_key_names_it(tiny_yaml, tmp_path):
    result = invoke("train", tiny_yaml, "--set", "train.lrr=1", "--out", tmp_path / "run")
    assert_user_error(result, "train.lrr")
    assert not (tmp_path / "run").exists()


def test_set_without_equals(tiny_yaml, tmp_path):
    assert_user_error(invoke("train", tiny_yaml, "--set", "train.epochs", "--out", tmp_path / "r"),
                      "train.epochs")


def test_wrong_value_type_names_the_key(tiny_yaml, tmp_path):
    assert_user_error(invoke("train", tiny_yaml, "--set", "train.batch_size=big", "--out", tmp_path / "r"),
                      "train.batch_size")


def test_config_that_is_not_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("data: {dataset: synthetic\nmodel: [resnet\n")
    assert_user_error(invoke("train", bad, "--out", tmp_path / "r"), bad, "YAML")


def test_config_that_is_not_a_mapping_or_missing(tmp_path):
    listy = tmp_path / "list.yaml"
    listy.write_text("- train\n- evaluate\n")
    assert_user_error(invoke("train", listy, "--out", tmp_path / "r"), listy)
    assert_user_error(invoke("train", tmp_path / "nope.yaml", "--out", tmp_path / "r"), tmp_path / "nope.yaml")


def test_train_refuses_to_overwrite_a_run(tiny_yaml, run_copy):
    before = (run_copy / "checkpoints" / "last.pt").read_bytes()
    result = invoke("train", tiny_yaml, "--set", "train.epochs=1", "--out", run_copy)
    assert_user_error(result, run_copy, "--resume")
    assert (run_copy / "checkpoints" / "last.pt").read_bytes() == before


class _Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run(tiny_yaml, tmp_path):
    from medsight.config import load_config
    from medsight.runtime.checkpoint import load_checkpoint
    from medsight.training.run import train_run

    def stop_after_first_epoch(epoch, row):
        if epoch == 1:
            raise _Interrupt

    run = tmp_path / "run"
    cfg = load_config(tiny_yaml, ["train.epochs=2"])
    with pytest.raises(_Interrupt):
        train_run(cfg, run, callbacks=[stop_after_first_epoch])
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1

    changed = invoke("train", tiny_yaml, "--set", "train.epochs=2", "--set", "train.lr=0.1",
                     "--out", run, "--resume")
    assert_user_error(changed, run, "config differs")

    result = invoke("train", tiny_yaml, "--set", "train.epochs=2", "--out", run, "--resume")
    assert result.exit_code == 0, (result.output, result.exception)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert [row["epoch"] for row in last["history"]] == [1, 2]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_without_a_run(tiny_yaml, tmp_path):
    assert_user_error(invoke("train", tiny_yaml, "--out", tmp_path / "empty", "--resume"),
                      tmp_path / "empty", "nothing to resume")


# --- evaluate ------------------------------------------------------------------------------



def test_overwrite_drops_what_was_fitted_on_the_old_model(tiny_yaml, tmp_path):
    from medsight.config import load_config
    from medsight.runtime.run_folder import DECISION_FILE, DERIVED_FILES, ENGINE_FILE
    from medsight.training.run import train_run

    run = tmp_path / "run"
    cfg = load_config(tiny_yaml, ["train.epochs=1"])
    train_run(cfg, run)
    (run / DECISION_FILE).write_text('{"threshold": 0.01}')  # chosen for the old model
    (run / ENGINE_FILE).write_text("{}")
    train_run(cfg, run, overwrite=True)
    assert not any((run / name).exists() for name in DERIVED_FILES)
    assert (run / "checkpoints" / "best.pt").is_file()
