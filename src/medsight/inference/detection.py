"""Boxes from a trained detector: decode the head outputs at every anchor, keep the confident
ones, non-maximum suppression per class (MONAI's ``BoxSelector``); ``load_detector`` turns a
run folder into something that finds boxes in new images, in those images' own pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from monai.apps.detection.utils.box_selector import BoxSelector
from monai.apps.detection.utils.detector_utils import preprocess_images
from torch import nn

from medsight.config import RunConfig
from medsight.errors import InputFileError
from medsight.models.detection import BOX_KEY, CLS_KEY, AnchorBoxes, build_detector
from medsight.runtime import Runtime
from medsight.runtime.checkpoint import BEST, load_checkpoint
from medsight.runtime.run_folder import read_run
from medsight.transforms.boxes import normalise, resize_with_boxes

Detections = dict[str, torch.Tensor]  # {"boxes": (P, 4) xyxy, "scores": (P,), "labels": (P,)}


@dataclass(frozen=True)
class BoxSelection:
    """Which decoded boxes are kept: RetinaNet's usual settings, with fewer candidates per level
    (MONAI's NMS visits boxes one by one, and a few hundred per level are plenty for mAP)."""

    score_threshold: float = 0.05
    nms_iou: float = 0.5
    max_detections: int = 100
    candidates_per_level: int = 300

    def selector(self) -> BoxSelector:
        return BoxSelector(apply_sigmoid=True, score_thresh=self.score_threshold,
                           topk_candidates_per_level=self.candidates_per_level, nms_thresh=self.nms_iou,
                           detections_per_img=self.max_detections)


def decode_detections(head_outputs: dict[str, list[torch.Tensor]], anchors: AnchorBoxes,
                      image_sizes: Sequence[Sequence[int]], selection: BoxSelection = BoxSelection()) -> list[Detections]:
    """Detections per image from the network's per-level maps; ``image_sizes`` are (rows, cols)
    before padding, and boxes are clipped to them."""
    logits = anchors.flatten(head_outputs[CLS_KEY]).float()
    deltas = anchors.flatten(head_outputs[BOX_KEY]).float()
    all_anchors, locations = anchors.anchors(head_outputs)
    per_level = [n * anchors.per_location for n in locations]
    level_anchors = all_anchors.split(per_level)
    selector = selection.selector()
    out = []
    for b, (rows, cols) in enumerate(image_sizes):
        boxes = [anchors.decode(d, a) for d, a in zip(deltas[b].split(per_level), level_anchors)]
        # MONAI clips box coordinate i to spatial_size[i]: x runs along the columns.
        kept, scores, labels = selector.select_boxes_per_image(boxes, list(logits[b].split(per_level)), (cols, rows))
        out.append({"boxes": kept.float().cpu(), "scores": scores.float().cpu(), "labels": labels.long().cpu()})
    return out


@torch.no_grad()
def predict_boxes(model: nn.Module, anchors: AnchorBoxes, images: Sequence[torch.Tensor], runtime: Runtime,
                  selection: BoxSelection = BoxSelection(), batch_size: int = 8) -> list[Detections]:
    """Detections for normalised images ``(C, rows, cols)`` (any sizes; padded per batch)."""
    model.eval()
    detections: list[Detections] = []
    for start in range(0, len(images), batch_size):
        batch, sizes = preprocess_images(list(images[start:start + batch_size]), 2, anchors.size_divisible)
        with runtime.autocast():
            head_outputs = model(runtime.batch(batch))
        detections += decode_detections(head_outputs, anchors, sizes, selection)
    return detections


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
