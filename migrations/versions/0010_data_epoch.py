"""data epoch: a random name of this database, so that (epoch, data version) names one state of
the data across databases (the streamed index's ETag is derived from it, not from the body)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("data_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.String(length=32), nullable=True))
    op.execute(sa.text("UPDATE data_version SET epoch = :epoch").bindparams(epoch=uuid.uuid4().hex))
    with op.batch_alter_table("data_version", schema=None) as batch_op:
        batch_op.alter_column("epoch", existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("data_version", schema=None) as batch_op:
        batch_op.drop_column("epoch")
