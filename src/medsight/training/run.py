"""``medsight train``: config in, run folder out.

A run folder holds everything needed to repeat, resume, evaluate or serve the model::

    config.yaml          the resolved configuration
    plan.json            what was derived from the data (classes, channels, input shape, ...)
    checkpoints/         last.pt (resume) and best.pt (use)
    metrics.jsonl        one line per epoch
    training_curves.png

Each task (classification, segmentation) contributes a ``setup`` function that prepares its
data, model, task and plan; the folder, runtime, processes and the loop are shared.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from medsight.config import RunConfig, save_config
from medsight.errors import ConfigError
from medsight.models import model_spec
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import LAST
from medsight.runtime.distributed import from_environment, shutdown
from medsight.runtime.run_folder import CONFIG_FILE, PLAN_FILE, read_config
from medsight.training.history import write_curves
from medsight.training.trainer import EpochCallback, Setup, Trainer
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)


def _setups() -> dict[str, Callable[[RunConfig, Runtime], Setup]]:
    from medsight.training.classification import setup_classification
    from medsight.training.fusion import setup_fusion
    from medsight.training.segmentation import setup_segmentation

    return {"classification": setup_classification, "segmentation": setup_segmentation, "fusion": setup_fusion}


def train_run(cfg: RunConfig, out: Path | None = None, *, resume: bool = False,
              overwrite: bool = False, callbacks: Sequence[EpochCallback] = ()) -> Path:
    """Train a model as configured (on every process of a distributed launch); return the run folder."""
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    model_spec(cfg.model.name)  # an unknown model fails before any data is read
    dist = from_environment()
    try:
        _check_run_dir(run_dir, cfg, resume, overwrite and dist.is_main)
        dist.barrier()  # nobody writes before every rank has checked the folder
        if not dist.is_main:
            logging.getLogger("medsight").setLevel(logging.WARNING)
        runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last,
                                 cfg.train.threads or dist.threads(), cfg.model.spatial_dims, dist.device())
        log.info("run folder %s; %s on %s, %d threads%s", run_dir, runtime.precision, runtime.device,
                 runtime.threads, f", {dist.world_size} processes" if dist.enabled else "")
        setup = _setups()["fusion" if cfg.data.clinical else cfg.task](cfg, runtime)  # images + table
        if dist.is_main:
            save_config(cfg, run_dir / CONFIG_FILE)
            write_json(run_dir / PLAN_FILE, {**setup.plan, "runtime": runtime.describe(),
                                             "processes": dist.world_size})
        trainer = Trainer(setup.model, setup.task, setup.cfg.train, run_dir, runtime, cfg.model.spatial_dims,
                          callbacks, dist)
        history = trainer.fit(resume=resume)
        if dist.is_main:
            write_curves(run_dir, history, setup.cfg.train.monitor)
        dist.barrier()
    finally:
        shutdown()
    return run_dir


def _check_run_dir(run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    last = run_dir / "checkpoints" / LAST
    if resume:
        if not last.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no checkpoints/{LAST})")
        saved = read_config(run_dir)
        if saved.model_dump() != cfg.model_dump():
            raise ConfigError(f"{run_dir}: the config differs from the one this run started with; "
                              "resume with the same config (see its config.yaml)")
        return
    if last.is_file() and not overwrite:
        raise ConfigError(f"{run_dir}: already holds a run; use --resume to continue it or another --out")
    if overwrite:
        for stale in (run_dir / "checkpoints").glob("*.pt"):
            stale.unlink()
