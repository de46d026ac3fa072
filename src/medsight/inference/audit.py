"""Audit rows for predictions (``store/audit.py``): who asked, which input, which model, what it said.

An input is recorded by the sha256 of its bytes (a folder: of its files' digests in path order),
a model by its run folder and checkpoint's sha256, with the calibration and threshold in force.
The output summary keeps the decision and its numbers only: never a file name (it may hold a
patient's name), a heatmap or pixels, nor any DICOM attribute that identifies a patient.
"""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path
from typing import Any

from medsight.inference.engine import file_sha256
from medsight.inference.load import LoadedRun
from medsight.runtime.checkpoint import BEST
from medsight.store.audit import AuditEntry, append
from medsight.store.db import Database

OUTPUT_KEYS = ("label_index", "probabilities", "uncertainty", "needs_review", "review_threshold",
               "mutual_information", "variance", "tta", "modality", "shape", "voxels_per_class",
               "out_of_distribution", "ood_score", "foreign_override", "ood_note")  # the input guard's (guard.py)
_checkpoint_digests: dict[tuple[str, int, int], str] = {}


def cli_caller() -> str:
    """``cli:USER``: the operating-system account that ran the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def input_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or of a folder's files' digests in path order; None if unreadable."""
    path = Path(path)
    try:
        if path.is_file():
            return file_sha256(path)
        digest = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(bytes.fromhex(file_sha256(f)))
        return digest.hexdigest()
    except OSError:
        return None


def checkpoint_sha256(run: LoadedRun) -> str | None:
    """sha256 of the run's best checkpoint (an ensemble: of its members' digests), remembered per file."""
    if run.members:
        parts = [checkpoint_sha256(m) or "" for m in run.members]
        return hashlib.sha256("".join(parts).encode()).hexdigest()
    path = run.run_dir / "checkpoints" / BEST
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _checkpoint_digests:
        _checkpoint_digests[key] = file_sha256(path)
    return _checkpoint_digests[key]


def output_summary(record: dict[str, Any]) -> dict[str, Any]:
    summary = {k: record[k] for k in OUTPUT_KEYS if k in record}
    if isinstance(record.get("lesions"), list):
        summary["lesions"] = len(record["lesions"])
    return summary


class AuditTrail:
    """Writes one audit row per prediction or refusal of one model (``run`` None: a model without
    a run folder, named ``name``)."""

    def __init__(self, db: Database, run: LoadedRun | None, name: str | None = None):
        self.db, self.run = db, run
        self.name = str(run.run_dir.resolve()) if run is not None else str(name)
        self.checkpoint = checkpoint_sha256(run) if run is not None else None

    def _calibration(self, tta: bool) -> dict | None:
        if self.run is None or (self.run.calibration is None and not self.run.members):
            return None
        return {"temperature": round(self.run.temperature(tta), 6), "review_threshold": self.run.review_threshold(tta),
                "tta": tta}

    def _entry(self, caller: str, digest: str | None, seconds: float, tta: bool, **fields) -> AuditEntry:
        return AuditEntry(caller=caller, run=self.name, input_sha256=digest, checkpoint_sha256=self.checkpoint,
                          calibration=self._calibration(tta), duration_ms=round(1000 * seconds, 3), **fields)

    def prediction(self, caller: str, digest: str | None, record: dict[str, Any], seconds: float,
                   tta: bool = False) -> int:
        return append(self.db, self._entry(caller, digest, seconds, tta, threshold=record.get("threshold"),
                                           label=record.get("label"), output=output_summary(record)))

    def refusal(self, caller: str, digest: str | None, reason: str, seconds: float, tta: bool = False) -> int:
        return append(self.db, self._entry(caller, digest, seconds, tta, refused=True, reason=reason))

