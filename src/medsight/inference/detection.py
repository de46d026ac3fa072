"""``load_detector`` turns a detection run folder into something that finds boxes in new images,
in those images' own pixels (the decoding is ``medsight.runtime.detection``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from medsight.config import RunConfig
from medsight.errors import InputFileError
from medsight.models.detection import AnchorBoxes, build_detector
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import BEST, load_checkpoint
from medsight.runtime.detection import BoxSelection, Detections, predict_boxes
from medsight.runtime.run_folder import read_run
from medsight.transforms.boxes import normalise, resize_with_boxes


@dataclass
class LoadedDetector:
    """A detection run ready for new images: the model, its anchors and its preprocessing."""

    run_dir: Path
    cfg: RunConfig
    plan: dict
    model: nn.Module
    anchors: AnchorBoxes
    runtime: Runtime
    selection: BoxSelection

    @property
    def class_names(self) -> list[str]:
        return list(self.plan["class_names"])

    def detect(self, images: Sequence[torch.Tensor], batch_size: int = 8) -> list[Detections]:
        """Detections for uint8 images ``(3, rows, cols)`` at their own size, in their own pixels."""
        scale = float(self.plan["scale"])
        norm = self.plan["normalise"]
        ready, factors = [], []
        for image in images:
            resized, _ = resize_with_boxes(image, torch.zeros(0, 4), scale)
            ready.append(normalise(resized, norm["mean"], norm["std"]))
            rows, cols = image.shape[-2:]
            factors.append(torch.tensor([cols / resized.shape[-1], rows / resized.shape[-2]] * 2))
        found = predict_boxes(self.model, self.anchors, ready, self.runtime, self.selection, batch_size)
        return [{**d, "boxes": d["boxes"] * f} for d, f in zip(found, factors)]


def load_detector(run_dir: str | Path, checkpoint: str = BEST) -> LoadedDetector:
    run_dir = Path(run_dir)
    cfg, plan = read_run(run_dir)
    if plan.get("task") != "detection":
        raise InputFileError(run_dir, f"not a box-detection run (task {plan.get('task', 'classification')!r})")
    runtime = Runtime.create(cfg.train.precision, cfg.train.channels_last, cfg.train.threads, 2)
    anchors = AnchorBoxes.from_description(plan["anchors"])
    model = build_detector(cfg.model.name, int(plan["in_channels"]), len(plan["class_names"]), anchors,
                           **cfg.model.options)
    model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / checkpoint)["model"])
    model = runtime.model(model, 2).eval()
    return LoadedDetector(run_dir, cfg, plan, model, anchors, runtime, BoxSelection(**plan["box_selection"]))
