"""Classification from images plus clinical table columns (``data.clinical``), late fusion.

The run is prepared as a classification run (same data, preprocessing, backbone, loss and
validation); then the clinical encoder is fitted on the training split alone, each split's
images are paired with their encoded rows (a ``FusionBatch``), and the backbone is wrapped in
the fusion head (``models/fusion.py``). The trainer is unchanged: a ``FusionBatch`` moves to
the device, indexes and counts like an image batch. ``plan.json`` keeps the fitted encoder
(``"clinical"``) and the head's shape (``"fusion"``), which inference rebuilds.
"""

from __future__ import annotations

import copy

import torch

from medsight.config import RunConfig
from medsight.errors import ConfigError
from medsight.models.fusion import FusionClassifier
from medsight.models.registry import model_spec
from medsight.runtime import Runtime
from medsight.training.classification import ClassificationTask, setup_classification
from medsight.training.trainer import Setup
from medsight.transforms.batch_augment import BatchAugment
from medsight.transforms.clinical import ClinicalEncoder, with_clinical
from medsight.transforms.fusion_batch import FusionBatch


def setup_fusion(cfg: RunConfig, runtime: Runtime) -> Setup:
    """A classification setup whose model and batches also read ``cfg.data.clinical``."""
    if cfg.task != "classification":
        raise ConfigError("data.clinical applies to classification runs")
    base = setup_classification(cfg, runtime)
    task = base.task
    if not isinstance(task, ClassificationTask):  # pragma: no cover - a guard for future tasks
        raise ConfigError("clinical fusion needs a classification task")
    encoder = ClinicalEncoder.fit(task.train.clinical or [], cfg.data.clinical, cfg.data.clinical_categorical)
    torch.manual_seed(cfg.train.seed + 1)  # the fusion layers' initial weights, fixed by the seed
    model = FusionClassifier(base.model, len(encoder.feature_names), task.num_classes,
                             cam_layer=model_spec(base.cfg.model.name).cam_layer)
    plan = {**base.plan, "clinical": encoder.to_plan(),
            "fusion": {"backbone": base.cfg.model.name, "image_features": model.image_features,
                       "table_features": model.table_features}}
    return Setup(base.cfg, model, fused_task(task, encoder), plan)


def fused_task(task: ClassificationTask, encoder: ClinicalEncoder) -> ClassificationTask:
    """The same classification task over splits whose images carry their table rows."""
    fused = copy.copy(task)
    fused.train, fused.val = with_clinical(task.train, encoder), with_clinical(task.val, encoder)
    if task.augment is not None:
        fused.augment = ImagesOnly(task.augment)  # type: ignore[assignment]
    return fused


class ImagesOnly:
    """Batch augmentation of a ``FusionBatch``'s images; the table rows pass unchanged."""

    def __init__(self, augment: BatchAugment):
        self.augment = augment

    def __call__(self, x: FusionBatch, generator: torch.Generator, masks=None):
        images, masks = self.augment(x.images, generator, masks)
        return FusionBatch(images, x.table), masks
