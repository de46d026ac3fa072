"""The first schema: jobs, feedback, the audit trail and its head record.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("run", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("worker", sa.String(128)),
        sa.Column("lease_expires", sa.DateTime),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_jobs_claim", "jobs", ["status", "priority", "received_at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id")),
        sa.Column("study_uid", sa.String(64)),
        sa.Column("reader", sa.String(128), nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("time", sa.DateTime, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("input_sha256", sa.String(64)),
        sa.Column("run", sa.Text, nullable=False),
        sa.Column("checkpoint_sha256", sa.String(64)),
        sa.Column("calibration", sa.Text),
        sa.Column("threshold", sa.Float),
        sa.Column("label", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("duration_ms", sa.Float),
        sa.Column("refused", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_time", "audit", ["time"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "count": 0, "last_id": 0, "last_hash": "0" * 64}])


def downgrade() -> None:
    for table in ("audit_head", "audit", "feedback", "jobs"):
        op.drop_table(table)
