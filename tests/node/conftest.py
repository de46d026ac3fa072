"""Node fixtures: a destination storage SCP (pynetdicom) on a free port, a synthetic CT series,
a sender, and node.yaml files."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pydicom
import pytest
import yaml

pytest.importorskip("pynetdicom")
from pynetdicom import AE, AllStoragePresentationContexts, evt  # noqa: E402
from pynetdicom.sop_class import CTImageStorage, Verification  # noqa: E402

from medsight.data.synthetic import synthetic_sample  # noqa: E402
from medsight.io.dicom_write import write_ct_slice  # noqa: E402
from medsight.io.image import spacing_of  # noqa: E402
from tests.service.servers import free_port  # noqa: E402

SCANNER = "SCANNER"


class Destination:
    """A storage SCP that keeps every dataset it is sent (duplicates included)."""

    def __init__(self):
        self.ae_title, self.host, self.port = "DEST", "127.0.0.1", free_port()
        self.received: list[pydicom.Dataset] = []
        self.lock = threading.Lock()
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self.server = ae.start_server((self.host, self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.received.append(ds)
        return 0x0000

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def as_config(self) -> dict:
        return {"ae_title": self.ae_title, "host": self.host, "port": self.port}


@pytest.fixture()
def destination() -> Iterator[Destination]:
    dest = Destination()
    try:
        yield dest
    finally:
        dest.stop()


def write_series(folder: Path, n: int = 3, modality: str = "CT") -> list[Path]:
    """``n`` synthetic CT slices of one series (one study), as a scanner would send them."""
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    paths = []
    for i in range(n):
        image = synthetic_sample(0, "test", i)["image"]
        path = write_ct_slice(image[0].numpy(), folder / f"{i}.dcm", spacing_of(image), study_uid=study,
                              series_uid=series, instance=i + 1, patient_id="PAT-SECRET-42")
        if modality != "CT":
            ds = pydicom.dcmread(path)
            ds.Modality = modality
            ds.save_as(path)
        paths.append(path)
    return paths


def send_files(port: int, paths: list[Path], calling: str = SCANNER, called: str = "MEDSIGHT") -> list[int]:
    """C-STORE files to the node; their statuses (an empty list: association refused)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return []
    try:
        return [assoc.send_c_store(pydicom.dcmread(p)).Status for p in paths]
    finally:
        assoc.release()


def write_node_config(folder: Path, run: Path, destination: Destination | dict, **overrides) -> Path:
    """node.yaml for ``run`` sending to ``destination`` (a test SCP, or a config mapping)."""
    raw = {"ae_title": "MEDSIGHT", "host": "127.0.0.1", "port": free_port(), "allowed_callers": [SCANNER],
           "db": "sqlite:///node.db", "quiet_seconds": 1, "routes": [{"match": {"Modality": "ct"}, "run": str(run)}],
           "destination": destination if isinstance(destination, dict) else destination.as_config(), "storage_dir": "received", "workers": 0, **overrides}
    path = folder / "node.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture()
def fake_run(tmp_path) -> Path:
    """A folder that looks like a run to the config check (no model: for tests that run no job)."""
    run = tmp_path / "runs" / "chest"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: chest\n")
    return run


@pytest.fixture(scope="session")
def node_run(tmp_path_factory) -> Path:
    """A classifier trained for one short epoch: the node tests judge the plumbing, not the model."""
    from medsight.training.run import train_run
    from tests.conftest import tiny_config

    cfg = tiny_config(train={"epochs": 1}, data={"synthetic": {"n_train": 64, "n_val": 32, "n_test": 32, "size": 64}})
    return train_run(cfg, tmp_path_factory.mktemp("runs") / "chest")
