"""Jobs carry what the triage worklist shows: modality, patient name and ID (shown only when the
service is told to), and the result's summary (label, probability of the critical class,
uncertainty, out-of-distribution flag, the triage priority ``urgency``, and a JSON summary).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("modality", sa.String(16)),
    ("patient_name", sa.Text),
    ("patient_id", sa.String(64)),
    ("label", sa.Text),
    ("probability", sa.Float),
    ("uncertainty", sa.Float),
    ("out_of_distribution", sa.Boolean),
    ("urgency", sa.Float),
    ("result", sa.Text),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind))
    op.create_index("ix_jobs_worklist", "jobs", ["urgency", "received_at"])
    op.create_index("ix_feedback_study", "feedback", ["study_uid"])


def downgrade() -> None:
    op.drop_index("ix_feedback_study", table_name="feedback")
    op.drop_index("ix_jobs_worklist", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
