"""re-analysis: at most one pending job per revision (succeeded jobs no longer block a new one)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_JOB = sa.text("state IN ('queued', 'running')")
ACTIVE_JOB = sa.text("state != 'failed'")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_active_revision")
        batch_op.create_index(
            "uq_jobs_pending_revision",
            ["model_id", "revision"],
            unique=True,
            sqlite_where=PENDING_JOB,
            postgresql_where=PENDING_JOB,
        )


def downgrade() -> None:
    # The old index allows one job that has not failed per revision: keep the newest (a pending
    # re-analysis, else the latest success); older succeeded jobs are marked failed with the
    # reason, so none is deleted.
    op.execute(
        "UPDATE jobs SET state = 'failed', last_error = 'superseded by a re-analysis' "
        "WHERE state = 'succeeded' AND id NOT IN (SELECT max(id) FROM jobs "
        "WHERE state != 'failed' GROUP BY model_id, revision)"
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_pending_revision")
        batch_op.create_index(
            "uq_jobs_active_revision",
            ["model_id", "revision"],
            unique=True,
            sqlite_where=ACTIVE_JOB,
            postgresql_where=ACTIVE_JOB,
        )
