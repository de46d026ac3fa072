"""``medsight train``: config in, run folder out.

A run folder holds everything needed to repeat, resume, evaluate or serve the model::

    config.yaml          the resolved configuration
    plan.json            what was derived from the data (classes, channels, input shape, ...)
    checkpoints/         last.pt (resume) and best.pt (use)
    metrics.jsonl        one line per epoch
    training_curves.png
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medsight.config import RunConfig, save_config
from medsight.data.prepared import PreparedSplit, prepare_data
from medsight.data.registry import build_dataset
from medsight.data.types import SplitData
from medsight.errors import ConfigError
from medsight.models import build_model, model_spec
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import LAST
from medsight.runtime.run_folder import CONFIG_FILE, PLAN_FILE, read_config
from medsight.training.classification import ClassificationTask, balanced_class_weights
from medsight.training.history import write_curves
from medsight.training.trainer import EpochCallback, Trainer
from medsight.transforms import augmentation
from medsight.utils.atomic import write_json

log = logging.getLogger(__name__)


def train_run(cfg: RunConfig, out: Path | None = None, *, resume: bool = False,
              overwrite: bool = False, callbacks: Sequence[EpochCallback] = ()) -> Path:
    """Train a classifier (or, for ``data.dataset: voc``, a box detector) as configured; return the run folder."""
    if cfg.data.dataset == "voc":
        from medsight.training.detection import train_detection

        return train_detection(cfg, out, resume=resume, overwrite=overwrite, callbacks=callbacks)
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    model_spec(cfg.model.name)  # an unknown model fails before any data is read
    _check_run_dir(run_dir, cfg, resume, overwrite)
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last, cfg.train.threads,
                             cfg.model.spatial_dims)
    log.info("run folder %s; %s on %s, %d threads", run_dir, runtime.precision, runtime.device,
             runtime.threads)
    data = build_dataset(cfg.data, cfg.train.seed)
    prepared, channels = prepare_data(data, cfg, ("train", "val"))
    train, val = prepared["train"], prepared["val"]
    plan = make_plan(cfg, data, prepared, channels, runtime)
    save_config(cfg, run_dir / CONFIG_FILE)
    write_json(run_dir / PLAN_FILE, plan)

    torch.manual_seed(cfg.train.seed)  # the same initial weights for the same seed
    model = build_model(cfg.model.name, channels, data.num_classes, cfg.model.spatial_dims,
                        input_size=tuple(train.images.shape[2:]), **cfg.model.options)
    weights = balanced_class_weights(train.labels, data.num_classes) if cfg.train.class_weights == "balanced" else None
    task = ClassificationTask(train, val, data.num_classes, cfg.train.batch_size,
                              augmentation(cfg.transforms, cfg.model.spatial_dims), weights,
                              cfg.train.label_smoothing)
    trainer = Trainer(model, task, cfg.train, run_dir, runtime, cfg.model.spatial_dims, callbacks)
    history = trainer.fit(resume=resume)
    write_curves(run_dir, history, cfg.train.monitor)
    return run_dir


def make_plan(cfg: RunConfig, data: SplitData, prepared: dict[str, PreparedSplit], channels: int,
              runtime: Runtime) -> dict:
    """nnU-Net-style fingerprint of what the run derived from the data, saved as JSON."""
    train = prepared["train"]
    counts = Counter(train.labels.tolist())
    return {
        "task": "classification",
        "class_names": data.class_names,
        "in_channels": channels,
        "spatial_dims": cfg.model.spatial_dims,
        "input_shape": list(train.images.shape[2:]),
        "source_spacing_median": np.median(train.source_spacings, axis=0).round(4).tolist(),
        "n_items": {s: len(p) for s, p in prepared.items()},
        "train_class_counts": {data.class_names[k]: counts.get(k, 0) for k in range(data.num_classes)},
        "skipped_files": [{"file": f, "problem": p} for f, p in data.skipped],
        "intensity_after_preprocessing": {"mean": float(train.images.mean()), "std": float(train.images.std())},
        "runtime": runtime.describe(),
    }


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
