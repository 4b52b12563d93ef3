"""registry: model revisions and super-weight coordinates

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=255), nullable=False),
        sa.Column("revision", sa.String(length=80), nullable=False),
        sa.Column("revision_kind", sa.String(length=16), nullable=False),
        sa.Column("architecture", sa.String(length=255), nullable=True),
        sa.Column("dtype", sa.String(length=32), nullable=True),
        sa.Column("num_layers", sa.Integer(), nullable=True),
        sa.Column("weight_files", JSONType, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "revision_kind IN ('commit', 'content', 'unknown')",
            name=op.f("ck_model_revisions_revision_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_revisions")),
        sa.UniqueConstraint(
            "model_id", "revision", name=op.f("uq_model_revisions_model_id_revision")
        ),
    )
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_revisions_model_id"), ["model_id"], unique=False)

    op.create_table(
        "super_weights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("tensor", sa.String(length=255), nullable=False),
        sa.Column("index", JSONType, nullable=False),
        sa.Column("index_key", sa.String(length=64), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(length=128), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("col", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("dtype", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("evidence", JSONType, nullable=False),
        sa.Column("citation", sa.Text(), nullable=True),
        sa.Column("detector_version", sa.String(length=64), nullable=True),
        sa.Column("reproduced_in", JSONType, nullable=False),
        sa.Column("retraction_reason", sa.Text(), nullable=True),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('published', 'candidate', 'verified', 'rejected', 'retracted')",
            name=op.f("ck_super_weights_state"),
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["model_revisions.id"],
            name=op.f("fk_super_weights_revision_id_model_revisions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_super_weights")),
        sa.UniqueConstraint(
            "revision_id",
            "tensor",
            "index_key",
            name=op.f("uq_super_weights_revision_id_tensor_index_key"),
        ),
    )
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_super_weights_revision_id"), ["revision_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_super_weights_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_super_weights_state"))
        batch_op.drop_index(batch_op.f("ix_super_weights_revision_id"))
    op.drop_table("super_weights")
    with op.batch_alter_table("model_revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_revisions_model_id"))
    op.drop_table("model_revisions")
