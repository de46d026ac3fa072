"""Decoding: head outputs that encode known boxes decode back to those boxes."""

import torch

from medsight.models.detection import BOX_KEY, CLS_KEY, AnchorBoxes, build_detector, default_anchor_sizes
from medsight.runtime import Runtime
from medsight.runtime.detection import BoxSelection, decode_detections, predict_boxes

GRIDS = [(8, 12), (4, 6), (2, 3)]  # a 64 x 96 input at strides 8, 16, 32


def _head_encoding(anchors, boxes, labels, num_classes=2):
    """Maps whose matched anchors are confident of their object's class and point at its box."""
    a = anchors.per_location
    head = {CLS_KEY: [torch.full((1, a * num_classes, *g), -8.0) for g in GRIDS],
            BOX_KEY: [torch.zeros(1, a * 4, *g) for g in GRIDS]}
    all_anchors, per_level = anchors.anchors(head)
    index = anchors.match(boxes, all_anchors, per_level)
    logits = torch.full((len(all_anchors), num_classes), -8.0)
    deltas = torch.zeros(len(all_anchors), 4)
    fg = index >= 0
    logits[fg, labels[index[fg]]] = 4.0
    deltas[fg] = anchors.encode(boxes[index[fg]], all_anchors[fg])
    return {CLS_KEY: _unflatten(logits, per_level, a), BOX_KEY: _unflatten(deltas, per_level, a)}


def _unflatten(flat, per_level, a):
    """Inverse of AnchorBoxes.flatten for one image: (sum HWA, C) -> per-level (1, A*C, H, W)."""
    maps = []
    for part, (h, w) in zip(flat.split([n * a for n in per_level]), GRIDS):
        c = part.shape[1]
        maps.append(part.reshape(h, w, a, c).permute(2, 3, 0, 1).reshape(1, a * c, h, w))
    return maps


def test_known_boxes_survive_encoding_flattening_decoding_and_nms():
    anchors = AnchorBoxes(default_anchor_sizes())
    boxes = torch.tensor([[10.0, 12.0, 36.0, 40.0], [50.0, 5.0, 90.0, 45.0], [60.0, 48.0, 75.0, 63.0]])
    labels = torch.tensor([1, 0, 1])
    head = _head_encoding(anchors, boxes, labels)
    flat = anchors.flatten(head[BOX_KEY])
    per_level = anchors.anchors(head)[1]
    assert torch.equal(anchors.flatten(_unflatten(flat[0], per_level, anchors.per_location)), flat)  # helper is sound
    (found,) = decode_detections(head, anchors, [(64, 96)], BoxSelection(score_threshold=0.5, nms_iou=0.5))
    order = found["boxes"][:, 0].argsort()
    assert torch.allclose(found["boxes"][order], boxes, atol=1e-3)
    assert found["labels"][order].tolist() == labels.tolist()
    assert (found["scores"] > 0.9).all()


def test_boxes_are_clipped_to_the_unpadded_image_and_columns_are_x():
    anchors = AnchorBoxes(default_anchor_sizes())
    head = _head_encoding(anchors, torch.tensor([[70.0, 30.0, 96.0, 60.0]]), torch.tensor([0]))
    # the image was 50 rows x 80 columns before padding to 64 x 96
    (found,) = decode_detections(head, anchors, [(50, 80)], BoxSelection(score_threshold=0.5))
    assert found["boxes"].tolist() == [[70.0, 30.0, 80.0, 50.0]]


def test_predict_boxes_pads_images_of_different_sizes():
    anchors = AnchorBoxes(default_anchor_sizes())
    torch.manual_seed(0)
    model = build_detector("retinanet-resnet10", 3, 2, anchors, width=8, fpn_channels=16)
    runtime = Runtime.create("fp32", threads=1)
    images = [torch.randn(3, 40, 70), torch.randn(3, 64, 64)]
    out = predict_boxes(model, anchors, images, runtime, BoxSelection(score_threshold=0.0, max_detections=7))
    assert len(out) == 2 and all(len(d["boxes"]) == 7 for d in out)
    assert (out[0]["boxes"][:, 2] <= 70).all() and (out[0]["boxes"][:, 3] <= 40).all()
