"""``medsight train``: config in, run folder out.

A run folder holds everything needed to repeat, resume, evaluate or serve the model::

    config.yaml          the resolved configuration
    plan.json            what was derived from the data (classes, channels, input shape, ...)
    checkpoints/         last.pt (resume) and best.pt (use)
    metrics.jsonl        one line per epoch
    training_curves.png
    calibration.json     classification: temperature scaling and review threshold fitted on val
    postprocessing.json  segmentation: largest-component filtering, where it helped on val
                         (both by the ``calibrate`` the caller passes: training sits below evaluation)

Each task (classification, segmentation) contributes a ``setup`` function that prepares its
data, model, task and plan; the folder, runtime, processes and the loop are shared.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Callable, Sequence

from medsight.config import RunConfig, save_config
from medsight.data.cache import CACHE_DIRNAME
from medsight.errors import ConfigError, MedsightError
from medsight.models import model_spec
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import LAST
from medsight.runtime.distributed import Distributed, from_environment, shutdown
from medsight.runtime.ensemble_folder import write_ensemble
from medsight.runtime.run_folder import (
    CONFIG_FILE,
    DERIVED_FILES,
    RunFolder,
    checkpoint_path,
    lock_run_folder,
    read_config,
    write_plan,
)
from medsight.tasks import CLASSIFICATION, DETECTION, task_for_data
from medsight.training.finetune import prepare_finetune
from medsight.training.history import collapse_warning, write_curves, write_history
from medsight.training.trainer import EpochCallback, Setup, Trainer

log = logging.getLogger(__name__)
# Fits RUN/calibration.json and input_profile.json (classification) or RUN/postprocessing.json
# (segmentation) after training, called as calibrate(run_dir, val=..., train=...) with the
# prepared splits; `medsight train` passes medsight.evaluation.calibrate.fit_on_val.
Calibrate = Callable[..., object]


def _setups() -> dict[str, Callable[[RunConfig, Runtime], Setup]]:
    from medsight.training.classification import setup_classification
    from medsight.training.detection import setup_detection
    from medsight.training.fusion import setup_fusion
    from medsight.training.pretrain import setup_pretrain
    from medsight.training.segmentation import setup_segmentation

    return {"classification": setup_classification, "segmentation": setup_segmentation,
            "detection": setup_detection, "fusion": setup_fusion, "pretrain": setup_pretrain}


def setup_of(cfg: RunConfig) -> str:
    """The setup a run takes: image + table fusion for manifests with clinical columns, else its
    task kind's (``data.dataset: voc`` selects detection, see ``medsight.tasks``)."""
    kind = task_for_data(cfg.data.dataset, cfg.task)
    return "fusion" if cfg.data.clinical and kind is CLASSIFICATION else kind.name  # images + table


def planned_overrides(data: str | Path | None, minutes: float | None = None) -> list[str]:
    """The config overrides of ``medsight train --data PATH --minutes M``: the data set kind
    (and task) from the path, a run name from the file name, and the time budget."""
    budget = [f"train.time_budget_minutes={minutes}"] if minutes else []
    if data is None:
        return budget
    from medsight.data.registry import dataset_kind, implied_task

    data = Path(data)
    if not data.exists():
        raise MedsightError(f"{data}: no such file or folder")
    kind = dataset_kind(data)
    name = data.name.split(".")[0] or "run"
    task = implied_task(data, kind)
    return [f"data.dataset={kind}", f"data.path={data.resolve()}", f"name={name}",
            *([f"task={task}"] if task else []), *budget]


def train_run(cfg: RunConfig, out: Path | None = None, *, resume: bool = False,
              overwrite: bool = False, callbacks: Sequence[EpochCallback] = (),
              calibrate: Calibrate | None = None) -> Path:
    """Train a model as configured (on every process of a distributed launch); return the run folder.

    ``calibrate``: called (classification, fusion, segmentation) once training is done (main process).
    """
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    if cfg.data.cache_dir is None:  # beside the run folder: reruns, folds and ensembles share it
        cfg = cfg.model_copy(deep=True)
        cfg.data.cache_dir = run_dir.resolve().parent / CACHE_DIRNAME
    if cfg.model.name is not None and setup_of(cfg) != DETECTION.name:
        model_spec(cfg.model.name)  # an unknown model fails before any data is read
    dist = from_environment()
    try:
        with lock_run_folder(run_dir):  # one writer per run folder, released even on kill -9
            _train_locked(cfg, run_dir, resume, overwrite, callbacks, dist, calibrate)
    finally:
        shutdown()
    return run_dir


def _train_locked(cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool,
                  callbacks: Sequence[EpochCallback], dist: Distributed, calibrate: Calibrate | None) -> None:
    _check_run_dir(run_dir, cfg, resume, overwrite and dist.is_main)
    dist.barrier()  # nobody writes before every rank has checked the folder
    if not dist.is_main:
        logging.getLogger("medsight").setLevel(logging.WARNING)
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last,
                             cfg.train.threads or dist.threads(), device=dist.device())
    log.info("run folder %s; %s on %s, %d threads%s", run_dir, runtime.precision, runtime.device,
             runtime.threads, f", {dist.world_size} processes" if dist.enabled else "")
    setup = _setups()[setup_of(cfg)](cfg, runtime)
    setup = prepare_finetune(setup)  # model.pretrained, and which weights train
    if resume:
        _check_same_config(run_dir, setup.cfg)
    if dist.is_main:
        save_config(setup.cfg, run_dir / CONFIG_FILE)  # the resolved config: repeatable as it is
        write_plan(run_dir, {**setup.plan, "runtime": runtime.describe(), "processes": dist.world_size})
    trainer = Trainer(setup.model, setup.task, setup.cfg.train, run_dir, runtime, setup.cfg.model.spatial_dims,
                      callbacks, dist)
    history = trainer.fit(resume=resume)
    # the steps after training load the saved weights; the trained model, its optimizer state
    # and gradients are let go first (a 3D U-Net's are hundreds of MB beside a CT being segmented)
    del trainer
    setup.model = None
    gc.collect()
    if dist.is_main:
        write_history(run_dir, history)  # a kill between the last checkpoint and its log line
        write_curves(run_dir, history, setup.cfg.train.monitor)
        if warning := collapse_warning(history, setup.cfg.train.monitor):
            log.warning(warning)
        if hasattr(setup.task, "after_training"):  # a task's own output (restore: restoration.png)
            setup.task.after_training(run_dir)
        if calibrate is not None and task_for_data(setup.cfg.data.dataset, setup.cfg.task).calibrates:
            # calibration and the input guard's profile, or post-processing, fitted on val (+ train)
            calibrate(run_dir, val=setup.task.val, train=getattr(setup.task, "train", None))
    dist.barrier()


def train_folds(cfg: RunConfig, out: Path | None, folds: int, *, resume: bool = False,
                calibrate: Calibrate | None = None) -> Path:
    """K cross-validation runs (``OUT/fold0`` ...) and their ensemble in ``OUT``.

    The test split stays the data set's; train+val are pooled and each fold validates on its
    own part (``data.folds``). A time budget is shared equally among the folds.
    """
    out = Path(out) if out is not None else Path("runs") / cfg.name
    members = []
    for k in range(folds):
        fold_cfg = cfg.model_copy(deep=True)
        fold_cfg.data.folds, fold_cfg.data.fold = folds, k
        if cfg.train.time_budget_minutes:
            fold_cfg.train.time_budget_minutes = cfg.train.time_budget_minutes / folds
        run_dir = out / f"fold{k}"
        log.info("fold %d of %d -> %s", k + 1, folds, run_dir)
        members.append(train_run(fold_cfg, run_dir, resume=resume and checkpoint_path(run_dir, LAST).is_file(),
                                 calibrate=calibrate))
    return write_ensemble(out, members)


def _check_same_config(run_dir: Path, resolved: RunConfig) -> None:
    """A resumed run must continue with the configuration it started with (after planning)."""
    saved, now = read_config(run_dir).model_dump(), resolved.model_dump()
    saved["data"].pop("cache_dir", None), now["data"].pop("cache_dir", None)  # where, not what
    if saved != now:
        raise ConfigError(f"{run_dir}: the config differs from the one this run started with; "
                          "resume with the same config (see its config.yaml)")


def _check_run_dir(run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    last = checkpoint_path(run_dir, LAST)
    if resume:
        if not last.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no checkpoints/{LAST})")
        return
    if last.is_file() and not overwrite:
        raise ConfigError(f"{run_dir}: already holds a run; use --resume to continue it or another --out")
    if overwrite:
        for stale in RunFolder(run_dir).checkpoints.glob("*.pt"):
            stale.unlink()
        for name in DERIVED_FILES:  # e.g. an old decision threshold must not apply to the new model
            (run_dir / name).unlink(missing_ok=True)
