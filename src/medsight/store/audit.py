"""The audit trail: one append-only row per inference, hash-chained.

Each row stores ``row_hash = sha256(prev_hash + canonical JSON of the row)``, where the row's
JSON holds its id, its ``prev_hash`` and every field below, so editing a row breaks its own hash
and deleting one breaks the next row's link. A head record (``audit_head``: the row count and
the last hash, written in the same transaction) makes deleting the newest rows visible too.

Rows hold hashes of inputs and checkpoints, never file names, patient names or patient IDs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import insert, select, update

from medsight.errors import MedsightError
from medsight.store.db import Database
from medsight.store.tables import GENESIS, audit, audit_head

# What ``audit export`` writes, in this order; JSON columns are decoded.
FIELDS = ("id", "time", "caller", "input_sha256", "run", "checkpoint_sha256", "calibration", "threshold",
          "label", "output", "duration_ms", "refused", "reason", "row_hash")
JSON_FIELDS = ("calibration", "output")
HASHED = tuple(f for f in FIELDS if f != "row_hash") + ("prev_hash",)


def iso_utc(moment: datetime | None = None) -> str:
    """``2025-01-31T09:00:00.123456Z``: the one text form times are stored and compared in."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class AuditEntry:
    """One inference as the trail records it (see ``inference/audit.py`` for how one is made)."""

    caller: str  # an API key id, an AE title or ``cli:USER``: never a key or a patient
    run: str
    input_sha256: str | None = None
    checkpoint_sha256: str | None = None
    calibration: dict | None = None
    threshold: float | None = None
    label: str | None = None
    output: dict | None = None
    duration_ms: float | None = None
    refused: bool = False
    reason: str | None = None
    time: str = field(default_factory=iso_utc)

    def columns(self) -> dict[str, Any]:
        values = asdict(self)
        for name in JSON_FIELDS:
            values[name] = canonical_json(values[name])
        for name in ("threshold", "duration_ms"):
            values[name] = None if values[name] is None else round(float(values[name]), 6)
        values["refused"] = bool(values["refused"])
        return values


def row_hash(row: dict[str, Any]) -> str:
    """sha256 of the previous row's hash followed by this row's canonical JSON."""
    body = json.dumps({k: row[k] for k in HASHED}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((row["prev_hash"] + body).encode()).hexdigest()


def append(db: Database, entry: AuditEntry) -> int:
    """Add ``entry`` at the end of the chain; the id of its row."""
    with db.transaction() as c:
        head = c.execute(select(audit_head).where(audit_head.c.id == 1).with_for_update()).one()
        row = {**entry.columns(), "id": head.last_id + 1, "prev_hash": head.last_hash}
        row["row_hash"] = row_hash(row)
        c.execute(insert(audit).values(**row))
        c.execute(update(audit_head).where(audit_head.c.id == 1).values(
            count=head.count + 1, last_id=row["id"], last_hash=row["row_hash"]))
    return row["id"]


def _rows(c, since: str | None = None) -> Iterator[dict[str, Any]]:
    query = select(audit).order_by(audit.c.id)
    if since is not None:
        query = query.where(audit.c.time >= since)
    for row in c.execute(query):
        yield dict(row._mapping)


def export_rows(db: Database, since: str | None = None) -> Iterator[dict[str, Any]]:
    """Every row (from ``since``, an ISO time, on), as ``FIELDS`` with JSON columns decoded."""
    with db.transaction() as c:
        for row in _rows(c, since):
            for name in JSON_FIELDS:
                row[name] = None if row[name] is None else json.loads(row[name])
            yield {name: row[name] for name in FIELDS}


def parse_since(text: str) -> str:
    """An ISO 8601 date or time (UTC unless it says otherwise) in the stored form."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MedsightError(f"--since {text!r}: not an ISO 8601 date or time (e.g. 2025-01-31T09:00)") from None
    return iso_utc(moment)


@dataclass(frozen=True)
class Verdict:
    rows: int  # rows checked
    problem: str | None = None  # the first bad row, one line; None: intact

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify(db: Database) -> Verdict:
    """Walk the chain from the first row; the first row that was edited or deleted, if any."""
    previous, expected, n = GENESIS, 1, 0
    with db.transaction() as c:
        head = c.execute(select(audit_head).where(audit_head.c.id == 1)).one()
        for row in _rows(c):
            if row["id"] != expected:
                return Verdict(n, f"row {expected}: deleted (the chain goes from row {expected - 1} "
                                  f"to row {row['id']})")
            if row["prev_hash"] != previous:
                return Verdict(n, f"row {row['id']}: its link to row {expected - 1} is broken "
                                  "(edited, or the row before it edited)")
            if row_hash(row) != row["row_hash"]:
                return Verdict(n, f"row {row['id']}: edited (its content does not match its hash)")
            previous, expected, n = row["row_hash"], expected + 1, n + 1
    if head.count > n:
        return Verdict(n, f"row {n + 1}: deleted (the head records {head.count} rows, {n} remain)")
    if head.count != n or head.last_id != n or head.last_hash != previous:
        return Verdict(n, f"row {n}: does not match the head record (the last row or the head was edited)")
    return Verdict(n)
