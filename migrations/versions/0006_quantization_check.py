"""the quantization check of a model revision's weights

Revision ID: 0006
Revises: 0005
Create Date: 2025-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quantization_check", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.drop_column("quantization_check")
