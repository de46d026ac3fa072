"""A real Orthanc PACS on loopback: a free port, authentication on, its database in a given
folder, stopped by its PID. Shared by the PACS and node tests and by ``bench/realtime.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.service.servers import free_port, wait_until_up

ORTHANC = shutil.which("Orthanc") or (shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin"))
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "medsight-test", "orthanc-secret-1"
MISSING = "Orthanc with its DICOMweb plugin is not installed (make install adds orthanc orthanc-dicomweb)"


class OrthancMissing(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed."""


def orthanc_installed() -> bool:
    return ORTHANC is not None and DICOMWEB_PLUGIN.is_file()


class Pacs:
    def __init__(self, port: int, dicom_port: int | None = None):
        self.http = f"http://127.0.0.1:{port}"
        self.url = self.http + "/dicom-web"
        self.user, self.password = USER, PASSWORD
        self.aet, self.dicom_port = "ORTHANC", dicom_port  # its DICOM (DIMSE) side, when enabled


@contextmanager
def start_orthanc(folder: Path, dicom: bool = False, **settings) -> Iterator[Pacs]:
    """Orthanc on loopback with authentication, its database in ``folder``; ``dicom``: its C-STORE SCP too.

    ``settings``: more configuration keys (e.g. ``DicomScpTimeout``). Raises :class:`OrthancMissing`
    when it is not installed."""
    if not orthanc_installed():
        raise OrthancMissing(MISSING)
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
    config.update(settings)
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
