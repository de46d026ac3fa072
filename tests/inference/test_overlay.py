"""The heatmap overlay PNG: decodable, RGB, large enough, heat drawn where the heat is."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medsight.inference.overlay import overlay_png, pick_slice, to_display


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def _panels(png: bytes, size: int, bar: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain and the overlaid panel of an overlay of a square image ``size`` px wide."""
    array = np.asarray(_decode(png)).astype(int)
    return array[bar:, :size], array[bar:, size + 4:]


@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 28, 28), (3, 40, 60), (1, 300, 200)])
def test_overlay_is_an_rgb_png_at_least_256_px_wide(shape):
    rng = np.random.default_rng(0)
    png = overlay_png(rng.random(shape).astype(np.float32), rng.random(shape[1:]).astype(np.float32),
                      caption="nodule (0.91)")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = _decode(png)
    assert image.format == "PNG"
    assert image.mode == "RGB"
    assert image.width >= 256
    assert image.height > shape[1]  # shown at least at its own size, plus the caption


def test_two_panels_side_by_side_and_a_caption_bar():
    png = overlay_png(np.zeros((1, 64, 64), np.float32), np.zeros((64, 64), np.float32), caption="x")
    image = _decode(png)
    assert image.size == (2 * 256 + 4, 256 + 18)
    no_caption = _decode(overlay_png(np.zeros((1, 64, 64), np.float32), np.zeros((64, 64), np.float32)))
    assert no_caption.size == (2 * 256 + 4, 256)


def test_heat_is_drawn_only_where_the_heat_is():
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))[None]  # grey ramp
    heat = np.zeros((64, 64), np.float32)
    heat[8:24, 40:56] = 1.0  # hot square, top right
    plain, overlaid = _panels(overlay_png(ramp, heat), 256, 0)
    assert plain.shape == overlaid.shape == (256, 256, 3)
    # the plain panel is grey (R = G = B)
    assert np.abs(plain[..., 0] - plain[..., 2]).max() <= 1
    hot = (slice(40, 90), slice(170, 220))  # inside the square, scaled by 4
    cold = (slice(150, 250), slice(10, 100))  # far from it
    assert np.abs(overlaid[cold] - plain[cold]).max() <= 1  # cold areas unchanged
    assert np.abs(overlaid[hot] - plain[hot]).mean() > 40  # hot area coloured
    # jet colour map: heat 1 is red, so the red channel dominates in the hot square
    assert overlaid[hot][..., 0].mean() > overlaid[hot][..., 2].mean() + 50


def test_to_display_stretches_and_handles_constant_images():
    grey = to_display(np.linspace(-1000, 500, 100, dtype=np.float32).reshape(1, 10, 10))
    assert grey.shape == (10, 10, 3)
    assert grey.min() == pytest.approx(0.0, abs=1e-6) and grey.max() == pytest.approx(1.0, abs=1e-6)
    flat = to_display(np.full((1, 4, 4), 7.0, np.float32))
    assert np.all(flat == 0) and np.isfinite(flat).all()


def test_pick_slice_takes_the_slice_with_the_most_heat():
    image = np.arange(5 * 6 * 7, dtype=np.float32).reshape(1, 5, 6, 7)
    heat = np.zeros((5, 6, 7), np.float32)
    heat[1, 0, 0] = 0.9  # a single hot voxel loses to ...
    heat[3] = 0.2  # ... a warm slice with more total heat
    img2d, heat2d = pick_slice(image, heat)
    assert img2d.shape == (1, 6, 7) and heat2d.shape == (6, 7)
    np.testing.assert_array_equal(img2d, image[:, 3])
    np.testing.assert_array_equal(heat2d, heat[3])


def test_pick_slice_leaves_2d_alone():
    image, heat = np.zeros((1, 4, 4)), np.ones((4, 4))
    a, b = pick_slice(image, heat)
    assert a is image and b is heat


def test_3d_overlay_shows_the_hottest_slice():
    image = np.zeros((1, 6, 32, 32), np.float32)
    image[0, 4] = np.linspace(0, 1, 32, dtype=np.float32)  # only slice 4 has content
    heat = np.zeros((6, 32, 32), np.float32)
    heat[4, 10:20, 10:20] = 1.0
    png = overlay_png(image, heat)
    picked = overlay_png(image[:, 4], heat[4])
    assert np.array_equal(np.asarray(_decode(png)), np.asarray(_decode(picked)))
    other = overlay_png(image[:, 0], heat[0])
    assert not np.array_equal(np.asarray(_decode(png)), np.asarray(_decode(other)))
