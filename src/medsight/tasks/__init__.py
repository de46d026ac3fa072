"""The task kinds a run can be: one registry every command asks instead of comparing strings.

``task_of(plan)`` reads a run's ``plan.json`` and returns its :class:`TaskKind`, which says what
each command may do with it (predict, segment, serve, export, calibrate, ensemble, PACS) and how
its inputs are prepared. The work itself (loading, predicting, evaluating, answering a request)
lives in the layers above, each keeping one table keyed by :attr:`TaskKind.name`;
``tests/test_tasks_registry.py`` checks that every table covers every kind.

An unknown task in a plan is one clear error naming the file, not a fall-through to the
classification code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from medsight.errors import InputFileError, MedsightError

__all__ = ["TaskKind", "TASKS", "CLASSIFICATION", "SEGMENTATION", "DETECTION", "PRETRAIN", "task_of",
           "task_named", "task_for_data", "require_command"]


@dataclass(frozen=True)
class TaskKind:
    """What a task is, for every command that meets a run of it.

    ``commands``: the sub-commands that take such a run (``predict``, ``segment``, ``pacs run``,
    ``evaluate``, ``serve``); ``predict_with``: the command that predicts new images with it;
    ``exports``/``calibrates``/``ensembles``: whether ``medsight export``, ``calibrate`` (what is
    fitted on val after training: calibration of a classifier, post-processing of a segmenter) and
    ``ensemble`` apply; ``fixed_input_size``: new images are resized to the trained input
    (segmentation keeps their size and slides a window); ``pictures_only``: inputs must be 8-bit
    2D image files (box detection); ``plan_names``: the ``task`` values in ``plan.json`` that
    mean this kind (``fusion``: a classifier that also reads clinical values); ``hint``: what to do
    instead when a command refuses such a run (``{run}`` is the run folder).
    """

    name: str
    description: str
    commands: frozenset[str]
    predict_with: str
    exports: bool
    calibrates: bool
    ensembles: bool
    fixed_input_size: bool
    pictures_only: bool = False
    plan_names: tuple[str, ...] = ()
    hint: str = ""

    def accepts(self, command: str) -> bool:
        return command in self.commands


CLASSIFICATION = TaskKind("classification", "a label and calibrated probabilities per image",
                          frozenset({"predict", "evaluate", "serve", "pacs run", "calibrate", "export", "ensemble",
                                     "embed", "index"}),
                          "predict", exports=True, calibrates=True, ensembles=True, fixed_input_size=True,
                          plan_names=("classification", "fusion"))
SEGMENTATION = TaskKind("segmentation", "a label map and a lesion table per image",
                        frozenset({"segment", "evaluate", "serve", "export", "calibrate"}), "segment", exports=True,
                        calibrates=True, ensembles=False, fixed_input_size=False, plan_names=("segmentation",))
DETECTION = TaskKind("detection", "boxes, scores and class names per image",
                     frozenset({"predict", "evaluate", "serve"}), "predict", exports=False, calibrates=False,
                     ensembles=False, fixed_input_size=False, pictures_only=True, plan_names=("detection",))
# An encoder learnt without labels (medsight pretrain): it predicts nothing by itself, so it is not
# one of TASKS (whose every kind predicts, evaluates and serves); embed/index and fine-tuning take it.
PRETRAIN = TaskKind("pretrain", "an encoder learnt from unlabelled images (self-supervised)",
                    frozenset({"embed", "index"}), "embed", exports=False, calibrates=False, ensembles=False,
                    fixed_input_size=True, plan_names=("pretrain",),
                    hint="it holds an encoder, not a predictor: fine-tune it with `medsight train --data DATA "
                         "--set model.pretrained={run}`, or use `medsight embed` / `medsight index`")
TASKS: dict[str, TaskKind] = {kind.name: kind for kind in (CLASSIFICATION, SEGMENTATION, DETECTION)}
_BY_PLAN_NAME = {alias: kind for kind in (*TASKS.values(), PRETRAIN) for alias in kind.plan_names}
DATASET_TASKS = {"voc": DETECTION}  # data sets that imply their task (VOC folders hold boxes)


def task_named(name: str, where: str | Path = "task") -> TaskKind:
    """The kind called ``name`` (a ``plan.json`` value such as ``fusion`` counts), else one error line."""
    try:
        return _BY_PLAN_NAME[name]
    except (KeyError, TypeError):
        raise InputFileError(where, f"unknown task {name!r}; medsight knows {', '.join(TASKS)}") from None


def task_of(plan: Mapping[str, Any], where: str | Path = "plan.json") -> TaskKind:
    """The kind of a run from its plan; plans written before the task was recorded are classifiers."""
    return task_named(plan.get("task", "classification"), where)


def task_for_data(dataset: str, task: str) -> TaskKind:
    """The kind a config trains: the data set's own when it implies one (``voc``), else ``task``."""
    return DATASET_TASKS.get(dataset) or task_named(task, "config task")


def require_command(kind: TaskKind, command: str, run: str | Path) -> None:
    """One clear line when ``medsight COMMAND`` meets a run it cannot use, naming the one that can."""
    if kind.accepts(command):
        return
    instead = f"; use `medsight {kind.predict_with}`" if kind.accepts(kind.predict_with) and command in (
        "predict", "segment") else ""
    if kind.hint:
        instead = "; " + kind.hint.format(run=run)
    raise MedsightError(f"{run}: a {kind.name} run; `medsight {command}` does not take {kind.name} runs{instead}")
