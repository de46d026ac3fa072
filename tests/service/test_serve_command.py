"""``medsight serve`` as users and outside checks start it: a real process on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cli.helpers import assert_user_error, invoke

from .servers import free_port, wait_until_up

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("args, needle", [
    (["--open", "--host", "0.0.0.0"], "only allowed on a loopback"),
    ([], "needs an API key"),
    (["--api-key", "short"], "at least 8"),
])
def test_unsafe_starts_are_refused_in_one_line(trained_run, args, needle):
    assert_user_error(invoke("serve", trained_run, *args), needle)


def test_not_a_run_folder(tmp_path):
    assert_user_error(invoke("serve", tmp_path, "--open"), "not a medsight run folder")


@pytest.mark.slow
def test_serve_process_answers_with_a_key_file(trained_run, slice_files, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-key-0123456789\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "medsight.cli", "serve", str(trained_run), "--host", "127.0.0.1",
                                "--port", str(port), "--api-key-file", str(key_file), "--max-upload-mb", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/health", timeout=90, process=process)
        assert httpx.get(url + "/health").json()["status"] == "ok"
        files = {"file": ("slice.dcm", slice_files["dicom"].read_bytes())}
        response = httpx.post(url + "/v1/predict", files=files, headers={"X-API-Key": "file-key-0123456789"})
        assert response.status_code == 200, response.text
        assert response.json()["label"] in ("nodule", "no nodule") and set(response.json()["probabilities"]) == {
            "nodule", "no nodule"}
        assert httpx.post(url + "/v1/predict", files=files).status_code == 401
        big = httpx.post(url + "/v1/predict", files={"file": ("big.dcm", b"\0" * (2 * 1024 * 1024))},
                         headers={"X-API-Key": "file-key-0123456789"})
        assert big.status_code == 413 and big.json()["status"] == 413
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert "slice.dcm" not in output  # the client's file name is never logged
    assert "Traceback" not in output
