"""The pieces ``bench/realtime.py`` runs: the node and its worker processes, a scanner that sends
studies by C-STORE, and a watcher that polls Orthanc for SRs and the node's queue for its depth."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification
from tests.service.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
SCANNER = "SCANNER"


# -- the studies ----------------------------------------------------------------------------------


def slice_pool(n: int, seed: int = 1) -> list[Dataset]:
    """``n`` synthetic CT slices (in distribution for a demo-like run), as in-memory datasets."""
    import tempfile

    import pydicom

    from medsight.data.synthetic import synthetic_sample
    from medsight.io.dicom_write import write_ct_slice
    from medsight.io.image import spacing_of

    pool = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            image = synthetic_sample(seed, "test", i)["image"]
            path = write_ct_slice(image[0].numpy(), Path(tmp) / f"{i}.dcm", spacing_of(image), instance=i + 1)
            pool.append(pydicom.dcmread(path))
    return pool


def make_study(pool: list[Dataset], slices: int, offset: int) -> list[Dataset]:
    """One study of ``slices`` instances from the pool (starting at ``offset``), with new UIDs."""
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(slices):
        ds = copy.deepcopy(pool[(offset + i) % len(pool)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, i + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out.append(ds)
    return out


class Scanner:
    """Sends a study in one association, as a modality does."""

    def __init__(self, port: int, called: str = "MEDSIGHT"):
        self.port, self.called = port, called
        self.ae = AE(ae_title=SCANNER)
        self.ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        self.ae.add_requested_context(Verification)

    def echo(self) -> bool:
        assoc = self.ae.associate("127.0.0.1", self.port, ae_title=self.called)
        if not assoc.is_established:
            return False
        try:
            status = assoc.send_c_echo()
            return bool(status) and status.Status == 0
        finally:
            assoc.release()

    def send(self, study: list[Dataset]) -> float:
        """C-STORE every instance; the monotonic time the last one was stored (the study's arrival)."""
        assoc = self.ae.associate("127.0.0.1", self.port, ae_title=self.called)
        if not assoc.is_established:
            raise RuntimeError("the node refused the association")
        try:
            statuses = [assoc.send_c_store(ds) for ds in study]
            arrived = time.monotonic()
        finally:
            assoc.release()
        bad = [s for s in statuses if not s or s.Status != 0]
        if bad:
            raise RuntimeError(f"the node answered {len(bad)} C-STORE(s) with a failure")
        return arrived


# -- the node and its workers ---------------------------------------------------------------------


def node_config(folder: Path, run: Path, pacs, quiet: float, lease: float) -> Path:
    """node.yaml: receive only (workers run as separate processes), results to Orthanc by C-STORE."""
    raw = {"ae_title": "MEDSIGHT", "host": "127.0.0.1", "port": free_port(), "allowed_callers": [SCANNER],
           "db": "sqlite:///node.db", "quiet_seconds": quiet, "lease_seconds": lease, "workers": 0,
           "routes": [{"match": {"Modality": "CT"}, "run": str(run)}],
           "destination": {"ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}}
    path = folder / "node.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class Cluster:
    """``medsight listen`` (receives and queues) and ``medsight work`` processes (one worker each,
    so that one can be killed alone), their logs in ``folder``."""

    config: Path
    n_workers: int
    folder: Path
    node: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: list = field(default_factory=list)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        return subprocess.Popen([sys.executable, "-m", "medsight.cli", *args, "--config", str(self.config)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, env=env)

    def start(self, scanner: Scanner, timeout: float = 120) -> "Cluster":
        self.node = self._spawn("node", "listen")
        deadline = time.monotonic() + timeout
        while not scanner.echo():
            if self.node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start; see {self.folder / 'node.log'}")
            time.sleep(0.3)
        for _ in range(self.n_workers):
            self.add_worker()
        return self

    def add_worker(self) -> subprocess.Popen:
        worker = self._spawn(f"worker-{len(self.workers)}", "work", "--workers", "1")
        self.workers.append(worker)
        return worker

    def kill(self, pid: int) -> None:
        """SIGKILL one of this cluster's worker processes (never anything else)."""
        if pid not in {w.pid for w in self.workers if w.poll() is None}:
            raise RuntimeError(f"pid {pid} is not a live worker of this bench")
        os.kill(pid, signal.SIGKILL)
        next(w for w in self.workers if w.pid == pid).wait()

    def stop(self) -> None:
        for process in [*self.workers, self.node]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)  # Ctrl-C: the node stops its threads
        for process in [*self.workers, self.node]:
            if process is None:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()


# -- watching the PACS and the queue ---------------------------------------------------------------


class Orthanc:
    """Orthanc's REST API: which studies hold an SR, and what each study holds."""

    def __init__(self, pacs):
        self.http = requests.Session()
        self.http.auth = (pacs.user, pacs.password)
        self.base = pacs.http

    def _find(self, level: str, query: dict) -> list[dict]:
        answer = self.http.post(f"{self.base}/tools/find", json={"Level": level, "Query": query, "Expand": True},
                                timeout=30)
        answer.raise_for_status()
        return answer.json()

    def studies_with_sr(self) -> set[str]:
        return {s["MainDicomTags"]["StudyInstanceUID"] for s in self._find("Study", {"ModalitiesInStudy": "SR"})}

    def instances_by_modality(self) -> dict[str, dict[str, int]]:
        """study UID -> modality -> how many instances Orthanc holds."""
        studies = {s["ID"]: s["MainDicomTags"]["StudyInstanceUID"] for s in self._find("Study", {})}
        held: dict[str, dict[str, int]] = {}
        for series in self._find("Series", {}):
            modality = series["MainDicomTags"].get("Modality", "?")
            counts = held.setdefault(studies[series["ParentStudy"]], {})
            counts[modality] = counts.get(modality, 0) + len(series["Instances"])
        return held


class Watcher(threading.Thread):
    """Notes when each study's SR first appears in Orthanc (polled every ``poll`` s) and samples
    the node's queue (jobs by status) every second."""

    def __init__(self, orthanc: Orthanc, queue, poll: float = 0.2):
        super().__init__(name="realtime-watcher", daemon=True)
        self.orthanc, self.queue, self.poll = orthanc, queue, poll
        self.sr_seen: dict[str, float] = {}
        self.depth: list[tuple[float, dict[str, int]]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        next_sample = 0.0
        while not self.stopping.wait(self.poll):
            now = time.monotonic()
            for uid in self.orthanc.studies_with_sr() - set(self.sr_seen):
                self.sr_seen[uid] = now
            if now >= next_sample:
                self.depth.append((now, self.queue.counts()))
                next_sample = now + 1.0

    def wait_for(self, uids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if uids <= set(self.sr_seen):
                return True
            time.sleep(self.poll)
        return False

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
