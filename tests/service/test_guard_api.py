"""``POST /v1/predict`` and the input guard: 422 with the reason, or a marked prediction with
``allow_foreign=true``."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .conftest import AUTH


def colour_png() -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_colour_photo_is_422_with_the_reason(client):
    response = client.post("/v1/predict", files={"file": ("photo.png", colour_png())}, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("upload: a colour image") and "trained on grey images" in detail


def test_allow_foreign_answers_and_marks_it(client):
    response = client.post("/v1/predict?allow_foreign=true", files={"file": ("photo.png", colour_png())},
                           headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["out_of_distribution"] is True and body["needs_review"] is True and body["foreign_override"]


def test_an_in_distribution_slice_is_not_marked(client, slice_files):
    with open(slice_files["dicom"], "rb") as fh:
        body = client.post("/v1/predict", files={"file": ("slice.dcm", fh)}, headers=AUTH).json()
    assert body["out_of_distribution"] is False and isinstance(body["ood_score"], float)
