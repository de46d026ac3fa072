"""Box-aware resizing and augmentation: boxes stay on the drawn objects."""

import pytest
import torch

from medsight.transforms.boxes import BoxAugment, normalise, resize_with_boxes


def _drawn(rows=60, cols=100, box=(30, 10, 50, 20)):
    image = torch.zeros(3, rows, cols)
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = 1.0
    return image, torch.tensor([box], dtype=torch.float32)


def _extent(image):
    ys, xs = torch.where(image[0] > 0.5)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_flips_move_boxes_with_the_drawn_rectangle():
    image, boxes = _drawn()
    seen = set()
    for seed in range(12):
        out, out_boxes, labels = BoxAugment(flip=True).set_random_state(seed)(image, boxes, torch.tensor([1]))
        assert out.shape == image.shape and labels.tolist() == [1]
        assert out_boxes[0].tolist() == _extent(out)
        seen.add(tuple(out_boxes[0].tolist()))
    # all four corners of the dihedral flips were visited: identity, x, y, both
    assert seen == {(30, 10, 50, 20), (50, 10, 70, 20), (30, 40, 50, 50), (50, 40, 70, 50)}


def test_zoom_keeps_size_and_boxes_on_the_object_and_drops_boxes_cut_away():
    image, boxes = _drawn()
    for seed in range(8):
        out, out_boxes, _ = BoxAugment(flip=False, zoom=0.3, prob=1.0).set_random_state(seed)(
            image, boxes, torch.tensor([0]))
        assert out.shape == image.shape
        assert out_boxes[0].tolist() == pytest.approx(_extent(out), abs=1.5)
    # an object near the edge is cut away by a strong zoom in: its box and label go
    corner, corner_box = _drawn(box=(0, 0, 4, 4))
    dropped = [len(BoxAugment(flip=False, zoom=0.6, prob=1.0).set_random_state(s)(
        corner, corner_box, torch.tensor([0]))[1]) for s in range(20)]
    assert 0 in dropped


def test_same_seed_same_result_and_intensity_changes_channels():
    image, boxes = _drawn()
    aug = BoxAugment(flip=True, zoom=0.2, intensity=0.3, prob=1.0)
    a = aug.set_random_state(3)(image, boxes, torch.tensor([0]))
    b = aug.set_random_state(3)(image, boxes, torch.tensor([0]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0][0], a[0][1])  # per-channel changes


def test_resize_scales_boxes_with_the_pixels():
    image, boxes = _drawn(rows=60, cols=100, box=(30, 10, 50, 20))
    small, small_boxes = resize_with_boxes(image, boxes, 0.5)
    assert small.shape == (3, 30, 50)
    assert small_boxes[0].tolist() == [15, 5, 25, 10]
    same, same_boxes = resize_with_boxes(image, boxes, 1.0)
    assert torch.equal(same, image) and torch.equal(same_boxes, boxes)


def test_normalise_per_channel():
    image = torch.stack([torch.full((2, 2), 10.0), torch.full((2, 2), 20.0)])
    out = normalise(image.to(torch.uint8), [10, 10], [1, 5])
    assert out[0].eq(0).all() and out[1].eq(2).all()
