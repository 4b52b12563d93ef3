"""fair queues: job priority and fair-share sequence, admin tokens (exempt from quotas)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("fair_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
    # Jobs already queued keep their order: their id is a first-in-first-out sequence.
    # (Server defaults stay: removing them would rebuild the tables on SQLite.)
    op.execute("UPDATE jobs SET fair_seq = id")
    op.create_index("ix_jobs_fair", "jobs", ["state", "priority", "fair_seq"])
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("admin")
    op.drop_index("ix_jobs_fair", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("fair_seq")
        batch_op.drop_column("priority")
