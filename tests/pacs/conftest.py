"""A real Orthanc PACS for the DICOMweb tests: loopback, a free port, authentication on,
its database in a temporary folder, stopped by its PID."""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.service.conftest import served  # noqa: F401 (the served classifier)
from tests.service.servers import free_port, wait_until_up

ORTHANC = shutil.which("Orthanc") or (shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin"))
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "medsight-test", "orthanc-secret-1"


class Pacs:
    def __init__(self, port: int, dicom_port: int | None = None):
        self.http = f"http://127.0.0.1:{port}"
        self.url = self.http + "/dicom-web"
        self.user, self.password = USER, PASSWORD
        self.aet, self.dicom_port = "ORTHANC", dicom_port  # its DICOM (DIMSE) side, when enabled


@contextmanager
def orthanc_server(folder: Path, dicom: bool = False) -> Iterator[Pacs]:
    """Orthanc on loopback with authentication, its database in ``folder``; ``dicom``: its C-STORE SCP too."""
    if ORTHANC is None or not DICOMWEB_PLUGIN.is_file():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (make install adds orthanc orthanc-dicomweb)")
    port, dicom_port = free_port(), free_port() if dicom else None
    config = {
        "Name": "MEDSIGHT-TEST", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "TemporaryDirectory": str(folder / "tmp"), "Plugins": [str(DICOMWEB_PLUGIN)], "HttpPort": port,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "DicomServerEnabled": dicom, "StableAge": 5, "SaveJobs": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{port}", "Ssl": False},
    }
    if dicom:
        config.update({"DicomAet": "ORTHANC", "DicomPort": dicom_port, "DicomAlwaysAllowStore": True,
                       "DicomAlwaysAllowEcho": True, "DicomCheckModalityHost": False})
    (folder / "tmp").mkdir(parents=True)
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                               cwd=folder)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/system", timeout=30, auth=(USER, PASSWORD), process=process)
        yield Pacs(port, dicom_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[Pacs]:
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as pacs:
        yield pacs


@pytest.fixture(scope="session")
def uploaded(orthanc) -> dict[str, pydicom.Dataset]:
    """pydicom's CT_small and MR_small, stored on the PACS (STOW-RS) once per session."""
    from medsight.pacs import connect, store

    datasets = {name: pydicom.dcmread(get_testdata_file(f"{name}_small.dcm")) for name in ("CT", "MR")}
    store(connect(orthanc.url, orthanc.user, orthanc.password), list(datasets.values()))
    return datasets


@pytest.fixture(scope="session")
def trained_run(trained_run, tmp_path_factory):
    """The shared classifier without its input guard: these tests are about the PACS exchange,
    and pydicom's real CT and MR studies they send are foreign to a synthetic-CT model (the
    guard refuses them; tests/inference/test_guard.py tests that)."""
    from medsight.inference.guard import PROFILE_FILE

    run = tmp_path_factory.mktemp("pacs-run") / "run"
    shutil.copytree(trained_run, run)
    (run / PROFILE_FILE).unlink(missing_ok=True)
    return run
