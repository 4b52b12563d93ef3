"""changes feed: each model revision's created and last-changed data version and what changed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs with server defaults: on SQLite a batch rebuild of model_revisions
    # would drop a table that super_weights' foreign key points at.
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_version", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("changed_version", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("last_change", sa.String(length=16), nullable=False, server_default="added")
        )
    # What exists was all added by the writes counted so far: the current version names it.
    op.execute(
        "UPDATE model_revisions SET created_version = (SELECT version FROM data_version), "
        "changed_version = (SELECT version FROM data_version)"
    )
    op.create_index("ix_model_revisions_changed", "model_revisions", ["changed_version", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_revisions_changed", table_name="model_revisions")
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.drop_column("last_change")
        batch_op.drop_column("changed_version")
        batch_op.drop_column("created_version")
