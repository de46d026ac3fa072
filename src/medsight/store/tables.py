"""The database's tables (SQLAlchemy Core): the job queue, readers' feedback and the audit trail.

The schema itself is made by the Alembic migrations in ``migrations/versions``; these table
objects are how the code reads and writes it, and must match the newest migration
(``tests/store/test_migrations.py`` compares them).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()
GENESIS = "0" * 64  # the "previous hash" of the first audit row
JOB_STATUSES = ("received", "queued", "running", "done", "failed")

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_uid", String(64), nullable=False),  # a DICOM UID, never a patient identifier
    Column("series_uid", String(64)),  # the series a node job reads (None: the whole study)
    Column("caller", String(128)),  # who sent the input: an AE title, never a patient
    Column("run", Text, nullable=False),  # the run folder (or served model) to apply
    Column("priority", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=3),
    Column("error", Text),
    Column("worker", String(128)),
    Column("lease_expires", DateTime),
    Column("received_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    # What the worklist shows (migration 0003): the series' modality and, once done, the result's
    # summary. ``urgency`` is the triage priority (``store/worklist.py``), what the worklist sorts by.
    Column("modality", String(16)),
    Column("patient_name", Text),  # shown only when the service is told to (--show-patient); never logged
    Column("patient_id", String(64)),
    Column("label", Text),
    Column("probability", Float),  # of the critical class: 1 - P(first class)
    Column("uncertainty", Float),
    Column("out_of_distribution", Boolean),
    Column("urgency", Float),
    Column("result", Text),  # canonical JSON: the rest of the summary (probabilities, referenced instance...)
)
Index("ix_jobs_claim", jobs.c.status, jobs.c.priority, jobs.c.received_at)
Index("ix_jobs_worklist", jobs.c.urgency, jobs.c.received_at)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id")),
    Column("study_uid", String(64)),
    Column("reader", String(128), nullable=False),  # a reader's user name, not a patient's
    Column("accepted", Boolean, nullable=False),
    Column("comment", Text),
    Column("time", DateTime, nullable=False),
)
Index("ix_feedback_study", feedback.c.study_uid)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", String(32), nullable=False),  # ISO 8601 UTC text: hashed as stored
    Column("caller", String(128), nullable=False),
    Column("input_sha256", String(64)),
    Column("run", Text, nullable=False),
    Column("checkpoint_sha256", String(64)),
    Column("calibration", Text),  # canonical JSON
    Column("threshold", Float),
    Column("label", Text),
    Column("output", Text),  # canonical JSON summary of the result
    Column("duration_ms", Float),
    Column("refused", Boolean, nullable=False),
    Column("reason", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
)
Index("ix_audit_time", audit.c.time)

# One row (id 1): how many audit rows there are and the last one's hash, so that deleting the
# newest rows is detected too. Written in the same transaction as each audit row.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_id", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
)
