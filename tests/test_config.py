"""Run configuration: defaults, --set overrides, strict validation, saving and path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medsight.config import (
    RunConfig,
    apply_override,
    config_from_dict,
    load_config,
    save_config,
)
from medsight.errors import ConfigError
from tests.conftest import tiny_config


def test_defaults_load():
    cfg = load_config(None)
    assert cfg == RunConfig()
    assert cfg.data.dataset == "synthetic"
    # what the data should decide is left empty for the planner (planning/)
    assert cfg.model.name is None and cfg.model.spatial_dims is None
    assert cfg.train.epochs is None and cfg.train.lr is None and cfg.transforms.augment is None
    assert sum(cfg.data.split_fractions) == pytest.approx(1.0)


def test_empty_yaml_file_is_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    assert load_config(path) == RunConfig()


def test_set_parses_numbers_lists_booleans_and_nested_keys():
    cfg = load_config(None, [
        "train.epochs=7",
        "train.lr=0.02",
        "train.channels_last=false",
        "transforms.spatial_size=[32, 48]",
        "transforms.augment.flip=[0,1]",
        "data.synthetic.n_train=12",
        "model.options.width=8",
        "name=my run",
    ])
    assert cfg.train.epochs == 7 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == pytest.approx(0.02)
    assert cfg.train.channels_last is False
    assert cfg.transforms.spatial_size == [32, 48]
    assert cfg.transforms.augment.flip == [0, 1]
    assert cfg.data.synthetic.n_train == 12
    assert cfg.model.options == {"width": 8}
    assert cfg.name == "my run"


def test_set_scientific_notation_for_a_float_key():
    # YAML 1.1 reads "1e-4" as a string; the float field must still accept it.
    assert load_config(None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)


def test_set_overrides_the_file_and_keeps_the_rest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3, batch_size: 8}\nmodel: {name: resnet18-small}\n")
    cfg = load_config(path, ["train.epochs=1"])
    assert cfg.train.epochs == 1
    assert cfg.train.batch_size == 8
    assert cfg.model.name == "resnet18-small"


def test_later_set_wins():
    assert load_config(None, ["train.epochs=2", "train.epochs=5"]).train.epochs == 5


def test_apply_override_on_a_plain_dict():
    raw: dict = {"train": {"lr": 0.1}}
    apply_override(raw, "train.schedule=none")
    apply_override(raw, "a.b.c=[1, 2.5, x]")
    assert raw == {"train": {"lr": 0.1, "schedule": "none"}, "a": {"b": {"c": [1, 2.5, "x"]}}}


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, ["train.epochs"])


def test_set_into_a_value_that_is_not_a_section_is_an_error():
    with pytest.raises(ConfigError, match="name"):
        load_config(None, ["name=x", "name.first=y"])


@pytest.mark.parametrize("key, unknown", [
    ("train.lrr", "train.lrr"),
    ("data.synthetic.n_trian", "data.synthetic.n_trian"),
    ("modle", "modle"),
    ("trian.epochs", "trian"),  # a misspelt section is the unknown key
])
def test_unknown_key_names_it(key, unknown):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"{key}=1"])
    assert f"{unknown}: Extra inputs are not permitted" in str(info.value)


def test_unknown_key_in_a_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "train.epochz" in str(info.value)


@pytest.mark.parametrize("override, where", [
    ("train.epochs=many", "train.epochs"),
    ("train.epochs=0", "train.epochs"),
    ("data.synthetic.n_train=[1, 2]", "data.synthetic.n_train"),
    ("transforms.intensity=sharpen", "transforms.intensity"),
    ("train.lr=-1", "train.lr"),
    ("transforms.spatial_size=64", "transforms.spatial_size"),
])
def test_wrong_type_or_value_names_the_key_path(override, where):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert where in str(info.value)


def test_dataset_other_than_synthetic_needs_a_path():
    with pytest.raises(ConfigError, match="data.path"):
        load_config(None, ["data.dataset=manifest"])
    cfg = load_config(None, ["data.dataset=manifest", "data.path=/tmp/m.csv"])
    assert cfg.data.path == Path("/tmp/m.csv")


@pytest.mark.parametrize("fractions", ["[0.5, 0.3, 0.3]", "[0.7, 0.15, 0.1]", "[1, 0, 0.1]"])
def test_split_fractions_must_sum_to_one(fractions):
    with pytest.raises(ConfigError, match="split_fractions"):
        load_config(None, [f"data.split_fractions={fractions}"])


def test_split_fractions_that_sum_to_one_are_fine():
    assert load_config(None, ["data.split_fractions=[0.6, 0.2, 0.2]"]).data.split_fractions == (0.6, 0.2, 0.2)


def test_missing_file_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\nmodel: {name: x\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(bad)
    assert str(bad) in str(info.value)
    assert "\n" not in str(info.value)  # one line for the CLI
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_error_from_config_from_dict_is_one_line():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"train": {"epochs": "x", "lr": "y"}}, source="here")
    assert str(info.value).startswith("here: train.")
    assert "\n" not in str(info.value)


def _nondefault_config() -> RunConfig:
    return tiny_config(
        data={"dataset": "manifest", "path": "/data/manifest.csv", "split_fractions": (0.6, 0.2, 0.2),
              "bad_files": "skip"},
        transforms={"spatial_size": [48, 48], "intensity": "scale01", "intensity_range": (0, 255),
                    "channels": 3, "augment": {"rotate_degrees": 10, "flip": [1], "noise_std": 0.01}},
        train={"schedule": "step", "early_stopping": {"patience": 3}, "threads": 2},
        evaluation={"target_sensitivity": 0.9},
    )


def test_save_then_load_round_trips(tmp_path):
    cfg = _nondefault_config()
    path = tmp_path / "run" / "config.yaml"
    save_config(cfg, path)
    assert yaml.safe_load(path.read_text())["train"]["schedule"] == "step"  # plain YAML
    assert load_config(path) == cfg
    assert load_config(path).model_dump() == cfg.model_dump()


def test_defaults_round_trip(tmp_path):
    save_config(RunConfig(), tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == RunConfig()


def test_relative_data_path_resolves_next_to_the_config(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "manifest.csv").write_text("path,label\n")
    path = configs / "run.yaml"
    path.write_text("data: {dataset: manifest, path: manifest.csv}\n")
    shell = tmp_path / "elsewhere"
    shell.mkdir()
    monkeypatch.chdir(shell)
    cfg = load_config(path)
    assert cfg.data.path.resolve() == (configs / "manifest.csv").resolve()


def test_relative_data_path_not_next_to_the_config_is_taken_from_the_shell(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "run.yaml"
    path.write_text("data: {dataset: manifest, path: data/manifest.csv}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    # stored absolute, so the run's saved config still finds the data from another folder
    assert cfg.data.path.is_absolute()
    assert cfg.data.path == (tmp_path / "data" / "manifest.csv").resolve()


def test_relative_data_path_in_a_set_override_is_relative_to_the_shell(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "m.csv").write_text("")
    path = configs / "run.yaml"
    path.write_text("data: {dataset: manifest, path: /somewhere/else.csv}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path, ["data.path=m.csv"])
    assert cfg.data.path == Path("m.csv")


def test_relative_data_path_prefers_the_config_folder_over_the_shell(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "manifest.csv").write_text("path,label\n")
    (tmp_path / "manifest.csv").write_text("path,label\n")  # a different file of the same name
    path = configs / "run.yaml"
    path.write_text("data: {dataset: manifest, path: manifest.csv}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(path).data.path.resolve() == (configs / "manifest.csv").resolve()


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_plans_what_it_leaves_out(path):
    cfg = load_config(path)
    assert cfg.name
    if path.name == "medmnist-best.yaml":  # the planned default: model and schedule left to the planner
        assert cfg.model.name is None and cfg.train.epochs is None and cfg.train.time_budget_minutes
