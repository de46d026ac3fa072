"""The detector and its anchors: output shapes, anchor order, matching and box coding."""

import pytest
import torch

from medsight.errors import ConfigError
from medsight.models.detection import BOX_KEY, CLS_KEY, AnchorBoxes, build_detector, default_anchor_sizes


def _maps(grids, channels, batch=1):
    return [torch.zeros(batch, channels, *g) for g in grids]


def test_network_gives_one_map_per_level_at_the_level_stride():
    anchors = AnchorBoxes(default_anchor_sizes((2, 3, 4)), aspect_ratios=(1.0, 0.5))
    assert anchors.per_location == 6 and anchors.strides == (8, 16, 32)
    net = build_detector("retinanet-resnet10", 3, 2, anchors, width=8, fpn_channels=16).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 96))
    assert [tuple(m.shape) for m in out[CLS_KEY]] == [(2, 12, 8, 12), (2, 12, 4, 6), (2, 12, 2, 3)]
    assert [tuple(m.shape) for m in out[BOX_KEY]] == [(2, 24, 8, 12), (2, 24, 4, 6), (2, 24, 2, 3)]
    shallow = build_detector("retinanet-resnet10", 3, 2, anchors, width=8, fpn_channels=16, head_convs=1)
    assert len(shallow.classification_head.conv) == 3 and len(net.regression_head.conv) == 12


def test_bad_detector_settings_are_config_errors():
    anchors = AnchorBoxes(default_anchor_sizes())
    with pytest.raises(ConfigError, match="unknown detector"):
        build_detector("yolo", 3, 2, anchors)
    with pytest.raises(ConfigError, match="multiple of 8"):
        build_detector("retinanet-resnet10", 3, 2, anchors, fpn_channels=12)
    with pytest.raises(ConfigError, match="head_convs=5"):
        build_detector("retinanet-resnet10", 3, 2, anchors, head_convs=5)
    with pytest.raises(ConfigError, match="one per level"):
        AnchorBoxes([[16, 20]], stages=(2, 3))
    with pytest.raises(ConfigError, match="fpn_stages"):
        AnchorBoxes([[16], [32]], stages=(3, 5))
    with pytest.raises(ConfigError, match="positive"):
        AnchorBoxes([[16], [0]], stages=(2, 3))


def test_flattened_outputs_line_up_with_anchors_in_xy_order():
    anchors = AnchorBoxes([[8.0], [16.0]], stages=(2, 3))  # strides 8 and 16, one anchor per place
    cls = _maps([(4, 6), (2, 3)], 1)  # an input of 32 rows x 48 columns
    cls[0][0, 0, 1, 4] = 5.0  # row 1, column 4 of the finest level
    head = {CLS_KEY: cls, BOX_KEY: _maps([(4, 6), (2, 3)], 4)}
    boxes, per_level = anchors.anchors(head)
    assert per_level == [24, 6] and boxes.shape == (30, 4)
    hit = int(anchors.flatten(cls)[0, :, 0].argmax())
    x0, y0, x1, y1 = boxes[hit].tolist()
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (4 * 8 + 4, 1 * 8 + 4)  # x is the column
    assert (x1 - x0, y1 - y0) == (8, 8)
    assert (boxes[24:, 2] - boxes[24:, 0]).eq(16).all()  # the coarse level follows the fine one


def test_encode_decode_round_trip_and_matching():
    anchors = AnchorBoxes(default_anchor_sizes())
    head = {CLS_KEY: _maps([(8, 12), (4, 6), (2, 3)], anchors.per_location * 2),
            BOX_KEY: _maps([(8, 12), (4, 6), (2, 3)], anchors.per_location * 4)}
    all_anchors, per_level = anchors.anchors(head)
    gt = torch.tensor([[10.0, 12.0, 36.0, 40.0], [50.0, 5.0, 90.0, 45.0]])
    index = anchors.match(gt, all_anchors, per_level)
    assert set(index[index >= 0].tolist()) == {0, 1}  # both objects get anchors
    for k in (0, 1):
        matched = all_anchors[index == k]
        centres = (matched[:, :2] + matched[:, 2:]) / 2
        assert ((centres - (gt[k, :2] + gt[k, 2:]) / 2).abs() < 32).all()  # near their object
    fg = all_anchors[index >= 0]
    wanted = gt[index[index >= 0]]
    assert torch.allclose(anchors.decode(anchors.encode(wanted, fg), fg), wanted, atol=1e-3)
    assert anchors.match(torch.zeros(0, 4), all_anchors, per_level).eq(-1).all()
