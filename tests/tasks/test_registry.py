"""The task registry: every kind is known by its plan names, unknown ones are one clear error,
and every per-kind table in the layers above covers every kind."""

from __future__ import annotations

import pytest

from medsight.config import config_from_dict
from medsight.errors import ConfigError, InputFileError, MedsightError
from medsight.tasks import CLASSIFICATION, DETECTION, SEGMENTATION, TASKS, require_command, task_for_data, task_of


def test_plans_name_their_kind_and_old_plans_are_classifiers():
    assert task_of({"task": "segmentation"}) is SEGMENTATION
    assert task_of({"task": "fusion"}) is CLASSIFICATION  # image + clinical values: a classifier
    assert task_of({"task": "detection"}) is DETECTION
    assert task_of({}) is CLASSIFICATION  # plans written before the task was recorded


def test_an_unknown_task_is_one_error_naming_the_file():
    with pytest.raises(InputFileError, match=r"runs/x/plan.json: unknown task 'keypoints'; medsight knows "
                                             r"classification, segmentation, detection"):
        task_of({"task": "keypoints"}, "runs/x/plan.json")


def test_voc_data_selects_detection_and_detection_needs_voc():
    assert task_for_data("voc", "classification") is DETECTION
    assert task_for_data("synthetic", "segmentation") is SEGMENTATION
    cfg = config_from_dict({"data": {"dataset": "voc", "path": "/x"}})  # configs written before: no task
    assert cfg.task == "detection"
    assert config_from_dict({"task": "detection", "data": {"dataset": "voc", "path": "/x"}}).task == "detection"
    with pytest.raises(ConfigError, match="task detection reads box annotations: set data.dataset=voc"):
        config_from_dict({"task": "detection"})


def test_require_command_names_the_run_and_the_command_that_fits():
    require_command(DETECTION, "predict", "runs/det")  # fine
    with pytest.raises(MedsightError, match=r"^runs/seg: a segmentation run; `medsight predict` does not take "
                                            r"segmentation runs; use `medsight segment`$"):
        require_command(SEGMENTATION, "predict", "runs/seg")
    with pytest.raises(MedsightError, match="`medsight pacs run` does not take detection runs"):
        require_command(DETECTION, "pacs run", "runs/det")


def test_every_per_kind_table_covers_every_kind():
    from medsight.api.results import _HEADLINES
    from medsight.evaluation.run_report import SECTIONS
    from medsight.inference.tasks import LOADERS
    from medsight.service.models import SERVED

    for table in (LOADERS, SERVED, _HEADLINES, SECTIONS):
        assert set(table) == set(TASKS)
    assert {k.predict_with for k in TASKS.values()} <= {"predict", "segment"}
    assert all(k.accepts(k.predict_with) and k.accepts("evaluate") for k in TASKS.values())
