"""lineage: the base model a revision's model card names, and the lineage check of its base's
verified super weights in these weights

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_model", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("lineage_check", JSONType, nullable=True))
        # The fine-tunes of a model: the revisions that name it as their base.
        batch_op.create_index("ix_model_revisions_base_model", ["base_model"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.drop_index("ix_model_revisions_base_model")
        batch_op.drop_column("lineage_check")
        batch_op.drop_column("base_model")
