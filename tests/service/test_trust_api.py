"""The service answers with the same calibrated, test-time-augmented diagnosis as the library."""

from __future__ import annotations

import pytest

from medsight.inference.predict import predict_image
from medsight.io import read_image

from .conftest import AUTH
from .test_api import post


def test_tta_and_occlusion_over_http(client, served, slice_files):
    run = served.get("nodules").run
    path = slice_files["dicom"]
    body = post(client, path.read_bytes(), query="?tta=true&heatmap=true&explain=occlusion").json()
    expected, _, _ = predict_image(run, read_image(path), heatmap=False, tta=True)
    assert body["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
    assert body["uncertainty"] == pytest.approx(expected["uncertainty"], abs=1e-5)
    assert body["needs_review"] == expected["needs_review"] and isinstance(body["needs_review"], bool)
    assert body["tta"] is True and body["heatmap"]["method"] == "occlusion"
    plain = post(client, path.read_bytes()).json()
    assert plain["tta"] is False and plain["mutual_information"] is None
    assert "occlusion" in client.get("/v1/models", headers=AUTH).json()[0]["explain_methods"]
