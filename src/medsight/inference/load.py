"""Load a run folder for use: config, plan, best weights, and the matching preprocessing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from monai.transforms import Compose
from torch import nn

from medsight.config import RunConfig
from medsight.data.prepared import PreparedSplit
from medsight.errors import ConfigError
from medsight.inference.calibration import Calibration, calibrated_softmax, read_calibration, rescale_threshold
from medsight.inference.engine import OnnxEngine, exported_model
from medsight.inference.engine_choice import recorded_engine
from medsight.inference.ensemble import EnsembleEngine
from medsight.inference.tta import IDENTITY, View, tta_views, view_logits
from medsight.models import build_model
from medsight.models.contrastive import contrastive_model
from medsight.models.fusion import fusion_model
from medsight.models.lora import apply_lora, merge_lora
from medsight.planning import apply_plan
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import BEST, load_checkpoint
from medsight.runtime.engine import Engine, TorchEngine
from medsight.runtime.ensemble_folder import is_ensemble, member_folders
from medsight.runtime.run_folder import PLAN_FILE, RunFolder, checkpoint_path, read_run
from medsight.tasks import DETECTION, PRETRAIN, TaskKind, task_of
from medsight.transforms import preprocessing
from medsight.transforms.clinical import ClinicalEncoder, with_clinical


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    plan: dict
    model: nn.Module
    runtime: Runtime
    engine: Engine  # the forward pass used for predictions (inference/engine_choice.py)
    calibration: Calibration | None = None  # RUN/calibration.json (temperature, review thresholds)
    members: list["LoadedRun"] = field(default_factory=list)  # an ensemble's runs
    _preprocess: Compose | None = field(default=None, init=False, repr=False)

    @property
    def kind(self) -> TaskKind:
        """The run's task kind (``medsight.tasks``)."""
        return task_of(self.plan, self.run_dir / PLAN_FILE)

    @property
    def class_names(self) -> list[str]:
        return list(self.plan["class_names"])

    @property
    def spatial_dims(self) -> int:
        return int(self.plan["spatial_dims"])

    def inference_config(self) -> RunConfig:
        """The run's config with the trained input size fixed, so any new image is fitted to it."""
        cfg = self.cfg.model_copy(deep=True)
        if not self.kind.fixed_input_size:  # segmentation keeps the size (sliding windows)
            return cfg
        cfg.transforms.spatial_size = list(self.plan["input_shape"])
        cfg.transforms.channels = int(self.plan["in_channels"])
        return cfg

    def preprocess(self) -> Compose:
        """The run's deterministic preprocessing, built once and reused for every image."""
        if self._preprocess is None:
            cfg = self.inference_config()
            self._preprocess = preprocessing(cfg.transforms, self.spatial_dims,
                                             cfg.transforms.channels or int(self.plan["in_channels"]))
        return self._preprocess

    @property
    def image_columns(self) -> list[str]:
        """The manifest columns a case's images come from, in channel order (``path`` alone
        for runs trained on one image per case)."""
        return list(self.plan.get("image_columns") or ["path"])

    @property
    def clinical(self) -> ClinicalEncoder | None:
        """The clinical encoder fitted on the training split, for fused runs; else None."""
        return ClinicalEncoder.from_plan(self.plan["clinical"]) if self.plan.get("clinical") else None

    def with_clinical(self, split: PreparedSplit) -> PreparedSplit:
        """A prepared split as the model reads it: paired with its encoded table for fused runs."""
        encoder = self.clinical
        return split if encoder is None else with_clinical(split, encoder)

    def prepared_splits(self, names: Sequence[str]) -> dict[str, PreparedSplit]:
        """The run's own data set's ``names`` splits, preprocessed as the model reads them."""
        from medsight.data.prepared import prepare_data
        from medsight.data.registry import build_dataset

        cfg = self.inference_config()
        prepared, _ = prepare_data(build_dataset(cfg.data, cfg.train.seed), cfg, list(names),
                                   channels=int(self.plan["in_channels"]))
        return {name: self.with_clinical(part) for name, part in prepared.items()}

    def threshold(self) -> float:
        """Decision threshold: one chosen by ``evaluate --target-sensitivity``, else the config's.

        A saved threshold is moved to the current calibration, so a later ``medsight calibrate``
        keeps every decision it made (see ``rescale_threshold``).
        """
        decision = RunFolder(self.run_dir).decision
        if decision.is_file():
            saved = json.loads(decision.read_text())
            return rescale_threshold(float(saved["threshold"]), float(saved.get("temperature", 1.0)),
                                     self.temperature())
        return self.cfg.evaluation.threshold

    # --- the one place where a loaded run's logits become probabilities -------------------

    def temperature(self, tta: bool = False) -> float:
        return self.calibration.temperature_for(tta) if self.calibration else 1.0

    def views(self, tta: bool = False) -> list[View]:
        """Test-time views: the identity, or the flips the run trained with and small rotations."""
        return tta_views(self.spatial_dims, self.cfg.transforms.augment.flip) if tta else [IDENTITY]

    def view_logits(self, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Raw logits ``(V, N, K)`` of each test-time view (V = 1 without TTA)."""
        return view_logits(self.engine, images, self.views(tta))

    def probabilities(self, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Calibrated class probabilities ``(V, N, K)`` per view; average over axis 0 to predict."""
        return calibrated_softmax(self.view_logits(images, tta), self.temperature(tta))

    def review_threshold(self, tta: bool = False) -> float | None:
        """Normalised entropy above which a case needs review: the config's, else the one chosen on val."""
        if self.cfg.evaluation.review_threshold is not None:
            return self.cfg.evaluation.review_threshold
        return self.calibration.review_threshold_for(tta) if self.calibration else None


def load_run(run_dir: str | Path, checkpoint: str = BEST, prefer_onnx: bool = True,
             encoder: bool = False) -> LoadedRun:
    """A run ready to predict, on the engine ``engine.json`` chose for this CPU (else its current
    ONNX export, else PyTorch); ``prefer_onnx=False``: PyTorch at the run's precision.

    An ensemble folder (``ensemble.json``) loads every member; its engine averages them.
    ``encoder``: a pretrain run (an encoder and its projection head) loads too, for its features;
    otherwise it is one clear error (it predicts nothing)."""
    run_dir = Path(run_dir)
    if is_ensemble(run_dir):
        members = [load_run(m, checkpoint, prefer_onnx) for m in member_folders(run_dir)]
        first = members[0]
        # each member's probabilities on its own calibrated scale, then averaged
        engine = EnsembleEngine([m.engine for m in members], [m.temperature() for m in members])
        return LoadedRun(run_dir, first.cfg, first.plan, first.model, first.runtime, engine, members=members)
    cfg, plan = read_run(run_dir)
    if task_of(plan, run_dir / PLAN_FILE) is DETECTION:
        raise ConfigError(f"{run_dir}: a detection run; load it with medsight.load (or load_for_inference)")
    if task_of(plan, run_dir / PLAN_FILE) is PRETRAIN and not encoder:
        raise ConfigError(f"{run_dir}: a pretrain run; " + PRETRAIN.hint.format(run=run_dir))
    planned = dict(plan.get("planned", {}))
    if plan.get("image_columns"):  # another manifest must give the trained images, in this order
        planned["data.images"] = plan["image_columns"]
    cfg = apply_plan(cfg, planned)
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last, cfg.train.threads,
                             plan["spatial_dims"])
    args = (cfg.model.name, plan["in_channels"], len(plan["class_names"]), plan["spatial_dims"])
    size = tuple(int(s) for s in plan["input_shape"])  # ViT and UNETR are built for it
    if plan.get("fusion"):
        model = fusion_model(*args, plan["fusion"]["table_features"], size, **cfg.model.options)
    elif plan.get("task") == PRETRAIN.name and plan.get("method") == "restore":  # image in, image out
        model = build_model(cfg.model.name, plan["in_channels"], plan["in_channels"], plan["spatial_dims"],
                            input_size=size, **cfg.model.options)
    elif plan.get("task") == PRETRAIN.name:
        model = contrastive_model(cfg.model.name, plan["in_channels"], plan["spatial_dims"],
                                  int(plan["projection_dim"]), size, **cfg.model.options)
    else:
        model = build_model(*args, input_size=size, **cfg.model.options)
    if cfg.train.finetune == "lora":  # the checkpoint holds the adapters: wrap, load, merge
        model = apply_lora(model, cfg.train.lora_rank, cfg.train.lora_alpha)
    checkpoint_file = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint(checkpoint_file)
    model.load_state_dict(state["model"])
    model = merge_lora(model)
    model = runtime.model(model, plan["spatial_dims"]).eval()
    onnx = exported_model(run_dir, checkpoint_file) if prefer_onnx else None
    engine = OnnxEngine(onnx, runtime.threads) if onnx else TorchEngine(model, runtime)
    run = LoadedRun(run_dir, cfg, plan, model, runtime, engine, read_calibration(run_dir, checkpoint_file))
    if prefer_onnx and checkpoint == BEST:  # the engine checked fastest on this CPU (engine_choice.py)
        run.engine = recorded_engine(run) or engine
    return run
