"""Jobs of the DICOM node: the series a job reads and the caller (AE title) that sent it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("series_uid", sa.String(64)))
        batch.add_column(sa.Column("caller", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("caller")
        batch.drop_column("series_uid")
