"""The run folder owns its file names and writes plan.json with a schema version; old plans load."""

from __future__ import annotations

import json

import pytest

from medsight.errors import InputFileError
from medsight.runtime import run_folder
from medsight.runtime.run_folder import PLAN_SCHEMA_VERSION, RunFolder, read_plan, read_run, write_plan
from medsight.tasks import SEGMENTATION, task_of


def test_plan_is_written_with_its_schema_version_and_read_back(tmp_path):
    path = write_plan(tmp_path, {"task": "segmentation", "class_names": ["bg", "x"], "schema_version": 99})
    assert path == RunFolder(tmp_path).plan == tmp_path / "plan.json"
    saved = json.loads(path.read_text())
    assert saved["schema_version"] == PLAN_SCHEMA_VERSION >= 1  # the caller's stale value is not kept
    assert list(saved)[0] == "schema_version" and not list(tmp_path.glob("*.tmp*"))  # atomic, no leftovers
    assert task_of(read_plan(tmp_path)) is SEGMENTATION


def test_a_plan_without_schema_version_still_loads(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"task": "classification", "class_names": ["a", "b"]}))
    (tmp_path / "config.yaml").write_text("name: old\n")
    cfg, plan = read_run(tmp_path)
    assert cfg.name == "old" and plan["class_names"] == ["a", "b"] and "schema_version" not in plan


@pytest.mark.parametrize("text, problem", [
    ('{"schema_version": 1000}', "schema_version 1000 is newer than this medsight reads"),
    ("[1, 2]", "not a plan (expected a JSON object)"),
    ("{nope", "not valid JSON"),
])
def test_a_bad_plan_is_one_line_naming_the_file(tmp_path, text, problem):
    (tmp_path / "plan.json").write_text(text)
    with pytest.raises(InputFileError) as err:
        read_plan(tmp_path)
    message = str(err.value)
    assert message.startswith(str(tmp_path / "plan.json")) and problem in message and "\n" not in message


def test_a_config_that_is_not_a_mapping_is_one_line(tmp_path):
    (tmp_path / "config.yaml").write_text("- a\n- b\n")
    with pytest.raises(InputFileError, match="config.yaml: not a medsight config"):
        run_folder.read_config(tmp_path)


def test_every_run_file_name_is_defined_once_here():
    """The names live in run_folder; the modules that used to define them import them."""
    from medsight.evaluation import outputs, run_report
    from medsight.inference import calibration, engine
    from medsight.runtime import checkpoint, ensemble_folder
    from medsight.training import history

    folder = RunFolder("r")
    assert (outputs.METRICS_FILE, run_report.REPORT_FILE) == (folder.metrics.name, folder.report.name)
    assert calibration.CALIBRATION_FILE is run_folder.CALIBRATION_FILE == folder.calibration.name
    assert (engine.ONNX_FILE, engine.EXPORT_FILE, ensemble_folder.ENSEMBLE_FILE) == (
        folder.onnx.name, folder.export.name, folder.ensemble.name)
    assert (history.HISTORY_FILE, history.CURVES_FILE) == (folder.history.name, folder.curves.name)
    assert folder.checkpoint(checkpoint.BEST) == folder.path / "checkpoints" / "best.pt"
    assert folder.decision.name == "decision.json" and folder.config.name == "config.yaml"
