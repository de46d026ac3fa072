"""Boxes from a detector: decode the head outputs at every anchor, keep the confident ones,
non-maximum suppression per class (MONAI's ``BoxSelector``). Training's validation and
``medsight.inference.detection`` both use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from monai.apps.detection.utils.box_selector import BoxSelector
from monai.apps.detection.utils.detector_utils import preprocess_images
from torch import nn

from medsight.models.detection import BOX_KEY, CLS_KEY, AnchorBoxes
from medsight.runtime.device import Runtime

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
