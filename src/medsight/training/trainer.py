"""The training loop, short on purpose; checkpoints, early stopping and logging are pieces.

Every epoch reseeds shuffling, augmentation and dropout from ``(seed, epoch)``, so a run
resumed from ``last.pt`` ends with the same weights as one that was never interrupted.
Under DistributedDataParallel every rank draws the same global batch and trains on its own
slice of it, with the loss scaled so that the averaged gradient is the global batch's: N
processes follow the single-process run (``tests/training/test_distributed.py``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medsight.config import RunConfig, TrainConfig
from medsight.errors import MedsightError
from medsight.planning.apply import train_defaults
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from medsight.runtime.distributed import Distributed
from medsight.runtime.run_folder import checkpoint_path
from medsight.training.batchnorm import recalibrate_batchnorm
from medsight.training.early_stopping import TREND, EarlyStopping
from medsight.training.history import write_history
from medsight.training.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)
EpochCallback = Callable[[int, dict], None]


class Task(Protocol):
    """What the trainer needs from a task (classification, segmentation, ...)."""

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, Any]]: ...
    def loss(self, outputs: Any, targets: Any) -> torch.Tensor: ...
    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]: ...
    # optional: clean training inputs for re-estimating BatchNorm statistics (batchnorm.py)
    # def norm_batches(self, seed: int, max_images: int) -> Iterator[torch.Tensor]: ...


@dataclass
class Setup:
    """What a task's setup hands the shared training run: the config with the planned values
    filled in, the model, the task, and the plan to save."""

    cfg: RunConfig
    model: nn.Module
    task: Task
    plan: dict


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


class Trainer:
    def __init__(self, model: nn.Module, task: Task, cfg: TrainConfig, run_dir: Path,
                 runtime: Runtime, spatial_dims: int, callbacks: Sequence[EpochCallback] = (),
                 dist: Distributed = Distributed()):
        cfg = train_defaults(cfg)
        self.model = runtime.model(model, spatial_dims)
        self.task, self.cfg, self.run_dir, self.runtime, self.dist = task, cfg, Path(run_dir), runtime, dist
        self.forward = self.model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids)
        self.epochs = cfg.epochs  # lowered to what fits when train.time_budget_minutes is set
        self._epoch_times: list[float] = []
        self._seconds_before = self._seconds = 0.0  # training time of earlier processes (resume)
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, lambda: self.epochs)
        stop = cfg.early_stopping
        self.stopper = EarlyStopping(cfg.monitor, stop.patience, stop.min_delta, stop.smoothing, stop.within_se)
        self.history: list[dict] = []
        self.callbacks = list(callbacks)

    def fit(self, resume: bool = False) -> list[dict]:
        start = self._restore() if resume else 0
        if start:
            log.info("resuming after epoch %d of %d", start, self.epochs)
        t_start = time.perf_counter() - self._seconds_before  # a resumed run continues its budget
        epoch = start
        while epoch < self.epochs and not self.stopper.should_stop:
            t0 = time.perf_counter()
            lr = max(group["lr"] for group in self.optimizer.param_groups)  # the head's
            train_loss, train_rate = self.train_epoch(epoch)
            self._recalibrate_batchnorm(epoch)
            row = {"epoch": epoch + 1, "train_loss": train_loss, **self._validate(), "lr": lr,
                   "train_images_per_second": round(train_rate, 1),
                   "seconds": round(time.perf_counter() - t0, 3)}
            epoch += 1
            self._fit_budget(epoch - start, time.perf_counter() - t_start, epoch)
            self._seconds = time.perf_counter() - t_start
            self.scheduler.step()
            keep = self.stopper.update(epoch, row)
            if self.stopper.smoothing < 1 and self.stopper.smoothed is not None:
                row[f"{self.stopper.monitor}{TREND}"] = self.stopper.smoothed  # what "kept" was chosen on
            row["kept"] = keep  # in best.pt (the training curves mark the last such epoch)
            self.history.append(row)
            self._checkpoint(epoch, keep)
            log.info("epoch %d/%d %s%s", epoch, self.epochs, _fmt(row), " (kept)" if keep else "")
            if self.stopper.should_stop:
                log.info("early stopping: no %s improvement for %d epochs", self.cfg.monitor, self.stopper.patience)
            for callback in self.callbacks:
                callback(epoch, row)
        return self.history

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training batches; (mean loss, images per second)."""
        seed = epoch_seed(self.cfg.seed, epoch)
        torch.manual_seed(seed)  # dropout and any other torch randomness
        self.model.train()
        total, count, t0 = 0.0, 0, time.perf_counter()
        last = self.history[-1].get(self.cfg.monitor) if self.history else None
        shown = {self.cfg.monitor: f"{last:.4f}"} if isinstance(last, float) and not math.isnan(last) else {}
        bar = tqdm(self.task.train_batches(seed), desc=f"epoch {epoch + 1}/{self.epochs}",
                   leave=False, disable=None if self.dist.is_main else True, unit="batch")
        for x, y in bar:
            n_global = len(x)
            x, y = self.dist.shard(x), self.dist.shard(y)
            x, y = self.runtime.batch(x), to_device(y, self.runtime.device)
            self.optimizer.zero_grad(set_to_none=True)
            with self.runtime.autocast():
                outputs = self.forward(x)
            loss = self.task.loss(outputs, y)
            if not torch.isfinite(loss):
                raise MedsightError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                    "lower train.lr or check the data for extreme values")
            # DDP averages gradients over ranks; weighting by the slice size makes that the
            # gradient of the global batch's mean loss even when the slices differ in size.
            (loss * (len(x) * self.dist.world_size / n_global)).backward()
            self.optimizer.step()
            total, count = total + loss.item() * len(x), count + len(x)
            bar.set_postfix(loss=f"{total / count:.4f}", **shown)
        total, count = self.dist.all_sum([total, count])
        return total / max(count, 1), count / max(time.perf_counter() - t0, 1e-9)

    def _recalibrate_batchnorm(self, epoch: int) -> None:
        samples = self.cfg.precise_bn_samples
        if samples and hasattr(self.task, "norm_batches"):
            # every rank sees the same images, so the statistics agree without communication
            recalibrate_batchnorm(self.model, self.task.norm_batches(epoch_seed(self.cfg.seed, epoch), samples),
                                  self.runtime)

    def _validate(self) -> dict[str, float]:
        row = self.task.validate(self.model, self.runtime) if self.dist.is_main else None
        return self.dist.broadcast(row)

    def _fit_budget(self, epochs_run: int, elapsed: float, done: int) -> None:
        """With a time budget, fit the number of epochs to the measured epoch time after every
        epoch, so the learning-rate schedule (which reads ``self.epochs``) still ends where
        training ends when the machine slows down; stop at the limit regardless.

        Epoch time is the last epoch's for the first two (the first carries one-off costs:
        kernel selection, caches), then the median of the last five."""
        budget = self.cfg.time_budget_minutes
        if budget is None:
            return
        self._epoch_times.append(elapsed - self._seconds_before - sum(self._epoch_times))
        steady = self._epoch_times[1:] or self._epoch_times
        per_epoch = self._epoch_times[-1] if epochs_run <= 2 else float(np.median(steady[-5:]))
        remaining = budget * 60 - elapsed
        planned = max(done, min(self.cfg.epochs, done + int(remaining // per_epoch)))
        if remaining < max(steady[-5:]):  # the next epoch may not fit: stop now
            planned = done
        if planned != self.epochs:
            log.info("time budget %.1f min: %d epochs (%.1f s each)%s", budget, planned, per_epoch,
                     "; stopping" if planned == done else "; schedule fitted to them")
            self.epochs = planned
        self.epochs = self.dist.broadcast(self.epochs)  # every rank stops at the same epoch

    def _checkpoint(self, epoch: int, keep: bool) -> None:
        if not self.dist.is_main:
            return
        weights = self.model.state_dict()
        if keep:
            save_checkpoint(self.run_dir, BEST, {"model": weights, "epoch": epoch, "monitor": self.cfg.monitor,
                                                 "value": self.history[-1].get(self.cfg.monitor)})
        save_checkpoint(self.run_dir, LAST, {
            "model": weights, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "stopper": self.stopper.state_dict(),
            "history": self.history, "epoch": epoch, "epochs": self.epochs, "seconds": self._seconds,
        })
        write_history(self.run_dir, self.history)

    def _restore(self) -> int:
        state = load_checkpoint(checkpoint_path(self.run_dir, LAST))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epochs = int(state.get("epochs", self.cfg.epochs))
        self._seconds_before = float(state.get("seconds", 0.0))
        self.scheduler.load_state_dict(state["scheduler"])
        self.stopper.load_state_dict(state["stopper"])
        self.history = list(state["history"])
        return int(state["epoch"])


def to_device(targets, device: torch.device):
    """Targets as a task gives them (a tensor, or lists/dicts of tensors, e.g. boxes) on ``device``."""
    if isinstance(targets, torch.Tensor):
        return targets.to(device, non_blocking=True)
    if isinstance(targets, dict):
        return {k: to_device(v, device) for k, v in targets.items()}
    if isinstance(targets, (list, tuple)):
        return type(targets)(to_device(v, device) for v in targets)
    return targets


def _fmt(row: dict) -> str:
    skip = {"epoch", "seconds", "train_images_per_second", "kept"}
    parts = []
    for k, v in row.items():
        if k in skip or v is None or k.endswith("_se"):
            continue
        parts.append(f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.4f}" if not math.isnan(v) else f"{k} n/a")
    return " ".join(parts) + f" ({row['seconds']:.1f}s)"
