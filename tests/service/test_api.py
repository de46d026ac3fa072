"""The REST contract: status and JSON body of every answer, results equal to the library's."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pytest
from PIL import Image

from medsight.inference.predict import predict_image
from medsight.io import read_image
from medsight.privacy.check import NOT_DEIDENTIFIED

from .conftest import AUTH, KEY, client_for

ERROR_KEYS = {"status", "error", "detail"}


def post(client, data: bytes, name: str = "image.bin", query: str = "", headers=AUTH, content_type=None):
    file = (name, data) if content_type is None else (name, data, content_type)
    return client.post(f"/v1/predict{query}", files={"file": file}, headers=headers)


def assert_error(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == ERROR_KEYS and body["status"] == status
    for needle in needles:
        assert needle in body["detail"], (needle, body["detail"])
    return body


def test_predict_matches_the_library(client, served, slice_files):
    run = served.get("nodules").run
    for kind, path in slice_files.items():
        response = post(client, path.read_bytes())
        assert response.status_code == 200, response.text
        body = response.json()
        expected, _, _ = predict_image(run, read_image(path), heatmap=False)
        assert body["label"] == expected["label"] and body["model"] == "nodules"
        assert body["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        assert body["input"]["format"] == {"dicom": "dicom", "nifti": "nifti", "png": "raster"}[kind]
        assert body["heatmap"] is None and body["mask"] is None and body["lesions"] is None


def test_heatmap_and_image_payloads(client, slice_files):
    body = post(client, slice_files["dicom"].read_bytes(), query="?heatmap=true&image=true&explain=gradcam%2B%2B").json()
    layer = Image.open(io.BytesIO(base64.b64decode(body["heatmap"]["png"])))
    assert layer.mode == "RGBA" and layer.size == (64, 64) and body["heatmap"]["method"] == "gradcam++"
    image = body["image"]
    assert (image["width"], image["height"], image["channels"], image["dtype"]) == (64, 64, 1, "int16")
    pixels = np.frombuffer(base64.b64decode(image["data"]), "<i2").reshape(64, 64)
    np.testing.assert_array_equal(pixels, read_image(slice_files["dicom"]).numpy()[0])  # HU, unchanged
    assert set(image["presets"]) >= {"lung", "mediastinum", "bone"}  # CT: the viewer offers presets


def test_content_decides_not_name_or_type(client, slice_files):
    """A PNG called scan.dcm and sent as application/dicom is read as the PNG it is."""
    response = post(client, slice_files["png"].read_bytes(), name="scan.dcm", content_type="application/dicom")
    assert response.status_code == 200 and response.json()["input"]["format"] == "raster"


def test_health_needs_no_key_and_tells_nothing_private(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert "nodules" not in response.text


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-123"}, {"X-API-Key": ""}])
def test_api_needs_the_key(client, slice_files, headers):
    assert_error(client.get("/v1/models", headers=headers), 401, "X-API-Key")
    assert_error(post(client, slice_files["png"].read_bytes(), headers=headers), 401)


def test_open_service_needs_no_key(served, slice_files):
    with client_for(served, api_key=None, open_access=True) as open_client:
        assert open_client.get("/v1/models").json()[0]["name"] == "nodules"
        assert post(open_client, slice_files["png"].read_bytes(), headers={}).status_code == 200


def test_bad_images_are_400(client, slice_files):
    dicom = slice_files["dicom"].read_bytes()
    assert_error(post(client, dicom[: len(dicom) - 3000]), 400, "truncated DICOM")
    png = slice_files["png"].read_bytes()
    assert_error(post(client, png[:60]), 400, "upload:")
    assert_error(post(client, b""), 400, "empty file")


def test_error_messages_hide_server_paths(client, slice_files):
    body = assert_error(post(client, slice_files["dicom"].read_bytes()[:2000], name="DOE^JOHN.dcm"), 400)
    assert "medsight-serve" not in body["detail"] and "/tmp" not in body["detail"] and "DOE" not in body["detail"]


@pytest.mark.parametrize("data", [b"just some text", b"%PDF-1.7\n" + b"\0" * 600, b"\x00" * 1000])
def test_unsupported_content_is_415(client, data):
    assert_error(post(client, data, name="scan.png", content_type="image/png"), 415, "unsupported content")


def test_not_multipart_is_415(client):
    assert_error(client.post("/v1/predict", content=b"{}", headers={**AUTH, "Content-Type": "application/json"}),
                 415, "multipart/form-data")


def test_parameter_and_field_errors_are_422(client, slice_files):
    png = slice_files["png"].read_bytes()
    assert_error(post(client, png, query="?heatmap=perhaps"), 422, "heatmap")
    assert_error(post(client, png, query="?explain=lime"), 422, "explain")
    assert_error(post(client, png, query="?model=liver"), 422, "no model named 'liver'", "nodules")
    assert_error(client.post("/v1/predict", files={"image": ("x.png", png)}, headers=AUTH), 422, "'file'")
    assert_error(client.post("/v1/predict", files=[("file", ("a.png", png)), ("file", ("b.png", png))], headers=AUTH),
                 422, "one image per request")


def test_size_limit_from_content_length(served, slice_files):
    with client_for(served, max_upload_bytes=4096) as small:
        body = assert_error(post(small, slice_files["dicom"].read_bytes()), 413, "upload limit")
        assert body["detail"].endswith("MiB")
        assert post(small, slice_files["png"].read_bytes()).status_code == 200  # 2.8 kB fits


def test_size_limit_while_streaming(served):
    """A chunked body (no Content-Length) is cut off once it passes the limit, not read to the end."""
    import asyncio

    from medsight.service.app import create_app
    from medsight.service.settings import ServiceSettings

    app = create_app(served, ServiceSettings(api_key=KEY, max_upload_bytes=256 * 1024))
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
    chunks = [head] + [b"\0" * 65536] * 100  # 6.4 MB, limit 256 kB
    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": chunks[len(received) - 1], "more_body": len(received) < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/predict", "raw_path": b"/v1/predict",
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("testserver", 80),
             "client": ("127.0.0.1", 1), "http_version": "1.1", "asgi": {"version": "3.0"},
             "headers": [(b"x-api-key", KEY.encode()), (b"content-type", b"multipart/form-data; boundary=b")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert b"upload limit" in sent[1]["body"]
    # Reading stops at the limit plus a bounded drain (at most the limit again, dropped
    # unkept, so the client can read its 413): 10 of the 101 messages, not the whole body.
    assert len(received) <= 10


def test_require_deidentified(served, slice_files, tmp_path):
    import pydicom

    ds = pydicom.dcmread(slice_files["dicom"])
    ds.PatientIdentityRemoved = "NO"
    identified = tmp_path / "identified.dcm"
    ds.save_as(identified)
    with client_for(served, require_deidentified=True) as strict:
        assert_error(post(strict, identified.read_bytes()), 422, NOT_DEIDENTIFIED)
        assert post(strict, slice_files["dicom"].read_bytes()).status_code == 200  # marked YES
        assert post(strict, slice_files["png"].read_bytes()).status_code == 200  # not DICOM: no tag to check
    with client_for(served) as lenient:
        assert post(lenient, identified.read_bytes()).status_code == 200


def test_wrong_dimensionality_is_400(client, tmp_path):
    from medsight.io.image import make_image
    from medsight.io.write import write_nifti

    write_nifti(make_image(np.zeros((1, 8, 16, 16), np.float32)), tmp_path / "volume.nii.gz")
    assert_error(post(client, (tmp_path / "volume.nii.gz").read_bytes()), 400, "reads 2D images", "3D")


def test_uploads_are_removed_and_names_not_logged(client, slice_files, caplog):
    caplog.set_level(logging.DEBUG)
    post(client, slice_files["dicom"].read_bytes(), name="DOE^JOHN_12345.dcm")
    post(client, b"garbage", name="DOE^JOHN_12345.dcm")
    assert list(client.app.state.upload_dir.iterdir()) == []
    assert "DOE" not in caplog.text and "12345" not in caplog.text
    assert "SYNTHETIC" not in caplog.text  # the DICOM's PatientName


def test_models_and_docs(client):
    [model] = client.get("/v1/models", headers=AUTH).json()
    assert model["name"] == "nodules" and model["class_names"] == ["no nodule", "nodule"]
    assert model["task"] == "classification" and model["spatial_dims"] == 2
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert client.get("/docs").status_code == 200
