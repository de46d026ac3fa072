"""Several requests at once: the same answers as one at a time, and 503 (never a hang) when full."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from medsight.service.models import ModelRegistry, ServedModel

from .conftest import AUTH, client_for, fake_lesion_model


def test_parallel_requests_equal_sequential(served, slice_files):
    inputs = [slice_files[k].read_bytes() for k in ("dicom", "nifti", "png")] * 4
    with client_for(served, workers=2, queue_size=16) as client:
        def send(data: bytes) -> dict:
            response = client.post("/v1/predict?heatmap=true", files={"file": ("x", data)}, headers=AUTH)
            assert response.status_code == 200, response.text
            body = response.json()
            return {"label": body["label"], "p": body["probabilities"], "heat": body["heatmap"]["png"]}

        one_by_one = [send(d) for d in inputs]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(send, inputs))
    for a, b in zip(one_by_one, together):
        assert a["label"] == b["label"]
        assert a["p"] == pytest.approx(b["p"], abs=1e-6)
        assert a["heat"] == b["heat"]  # Grad-CAM runs one at a time per model: no mixed-up hooks


def test_full_queue_answers_503_with_retry_after(slice_files):
    release, started = threading.Event(), threading.Event()
    slow = fake_lesion_model("slow")
    inner = slow.predict

    def blocking(image, options):
        started.set()
        release.wait(10)
        return inner(image, options)

    registry = ModelRegistry()
    registry.add(ServedModel("slow", slow.task, slow.info, blocking))
    png = slice_files["png"].read_bytes()
    with client_for(registry, workers=1, queue_size=0) as client:
        def send() -> int:
            return client.post("/v1/predict", files={"file": ("x", png)}, headers=AUTH).status_code

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(send)
            assert started.wait(10)
            busy = client.post("/v1/predict", files={"file": ("x", png)}, headers=AUTH)
            release.set()
            assert first.result(10) == 200
        assert busy.status_code == 503
        assert int(busy.headers["Retry-After"]) >= 1
        assert busy.json()["status"] == 503 and "busy" in busy.json()["detail"]
        assert send() == 200  # the slot is free again
