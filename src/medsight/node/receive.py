"""The node's receiving side: a C-ECHO/C-STORE SCP that files instances by study and series, and
queues one job per routed series once the series has been quiet for ``quiet_seconds``.

A series' jobs are written to the database as ``received`` when its first instance arrives (one
per matching route), and released to ``queued`` when no new instance came for ``quiet_seconds``.
A restarted node finds its ``received`` jobs in the database and releases them the same way.
Logs name UIDs and AE titles only, never a patient.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import Verification

from medsight.node.config import NodeConfig
from medsight.node.dimse import tls_context
from medsight.store.jobs import JobQueue
from medsight.utils.atomic import atomic_path

log = logging.getLogger(__name__)
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
FAILURE = 0xC211  # "Cannot understand": out of resources / processing failure (C-STORE, PS3.4 B.2.3)


def _text(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def series_folder(storage_dir: Path, study_uid: str, series_uid: str) -> Path:
    return Path(storage_dir) / study_uid / series_uid


def remove_series(storage_dir: Path, study_uid: str, series_uid: str) -> None:
    """Delete a received series, and its study's folder once that is empty."""
    folder = series_folder(storage_dir, study_uid, series_uid)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass  # other series of the study are still there


@dataclass
class Pending:
    study_uid: str
    last_seen: float
    job_ids: list[int] = field(default_factory=list)
    instances: int = 0


class Receiver:
    """Files received instances and turns quiet series into queued jobs (thread-safe)."""

    def __init__(self, cfg: NodeConfig, queue: JobQueue, clock=time.monotonic):
        self.cfg, self.queue, self.clock = cfg, queue, clock
        self.pending: dict[str, Pending] = {}
        self.lock = threading.Lock()
        for job in queue.with_status("received"):  # left by a node that stopped: quiet from now on
            if job.series_uid:
                self.pending.setdefault(job.series_uid, Pending(job.study_uid, clock())).job_ids.append(job.id)

    def on_store(self, event) -> int:
        """EVT_C_STORE: write the instance atomically, note its series; a DIMSE status."""
        ds = event.dataset
        ds.file_meta = event.file_meta
        uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        if not all(len(u) <= 64 and UID.match(u) for u in uids):
            log.warning("refused an instance without valid study/series/instance UIDs")
            return 0xA900  # dataset does not match the SOP class
        study, series, sop = uids
        caller = event.assoc.requestor.ae_title.strip()
        try:
            with atomic_path(series_folder(self.cfg.storage_dir, study, series) / f"{sop}.dcm") as tmp:
                ds.save_as(tmp, enforce_file_format=True)
            self.note(ds, caller)
        except Exception as exc:  # the sender gets a failure status; the node keeps listening
            log.error("could not keep instance %s: %s", sop, exc)
            return FAILURE
        return 0x0000

    def note(self, ds, caller: str) -> None:
        """Record one instance of its series; the first one records the series' jobs as received."""
        series = str(ds.SeriesInstanceUID)
        with self.lock:
            entry = self.pending.get(series)
            if entry is None:
                entry = self.pending[series] = Pending(str(ds.StudyInstanceUID), self.clock())
                routes = self.cfg.route_for(ds)
                for route in routes:  # the patient's name and ID are for the worklist, never the log
                    entry.job_ids.append(self.queue.add(
                        entry.study_uid, str(route.run), priority=route.priority, queued=False,
                        series_uid=series, caller=caller, modality=_text(ds.get("Modality")),
                        patient_name=_text(ds.get("PatientName")), patient_id=_text(ds.get("PatientID"))))
                if routes:
                    log.info("series %s from %s: receiving for %d route(s)", series, caller, len(routes))
                else:
                    log.info("series %s from %s (Modality %s): no route matches; received without a job",
                             series, caller, ds.get("Modality", "?"))
            entry.last_seen, entry.instances = self.clock(), entry.instances + 1

    def sweep(self) -> int:
        """Release the jobs of series quiet for ``quiet_seconds``; how many series were complete."""
        now, done = self.clock(), []
        with self.lock:
            for series, entry in list(self.pending.items()):
                if now - entry.last_seen >= self.cfg.quiet_seconds:
                    done.append((series, self.pending.pop(series)))
        for series, entry in done:
            for job_id in entry.job_ids:
                self.queue.release(job_id)
            if entry.job_ids:
                log.info("series %s complete (%d new instance(s)): queued job(s) %s", series, entry.instances,
                         ", ".join(map(str, entry.job_ids)))
            elif not self.cfg.keep_received:
                remove_series(self.cfg.storage_dir, entry.study_uid, series)
        return len(done)


def start_scp(cfg: NodeConfig, receiver: Receiver):
    """Listen (in background threads) for C-ECHO and C-STORE from ``allowed_callers``; the server."""
    ae = AE(ae_title=cfg.ae_title)
    # every storage class in any transfer syntax (compressed too: the files are kept as sent)
    ae.supported_contexts = [build_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
                             for cx in AllStoragePresentationContexts]
    ae.add_supported_context(Verification)
    ae.require_calling_aet = list(cfg.allowed_callers)  # others are rejected at association
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
    return ae.start_server((cfg.host, cfg.port), block=False, ssl_context=tls_context(cfg.tls, server=True),
                           evt_handlers=[(evt.EVT_C_STORE, receiver.on_store)])
