"""mixture-of-experts: the routed expert of a coordinate, and super experts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

STATES = "state IN ('published', 'reported', 'candidate', 'verified', 'rejected', 'retracted')"


def upgrade() -> None:
    # Existing coordinates are all in dense layers: no expert.
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expert", sa.Integer(), nullable=True))
    op.create_table(
        "super_experts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("expert", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("max_abs_output", sa.Double(), nullable=True),
        sa.Column("spike_ratio", sa.Double(), nullable=True),
        sa.Column("row", sa.Integer(), nullable=True),
        sa.Column("tokens_routed", sa.Integer(), nullable=True),
        sa.Column("evidence", JSONType, nullable=False),
        sa.Column("citation", sa.Text(), nullable=True),
        sa.Column("sources", JSONType, nullable=False),
        sa.Column("disputed_with", JSONType, nullable=False),
        sa.Column("detector_version", sa.String(length=64), nullable=True),
        sa.Column("reproduced_in", JSONType, nullable=False),
        sa.Column("retraction_reason", sa.Text(), nullable=True),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(STATES, name=op.f("ck_super_experts_state")),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["model_revisions.id"],
            name=op.f("fk_super_experts_revision_id_model_revisions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_super_experts")),
        sa.UniqueConstraint(
            "revision_id",
            "layer",
            "expert",
            name=op.f("uq_super_experts_revision_id_layer_expert"),
        ),
    )
    with op.batch_alter_table("super_experts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_super_experts_revision_id"), ["revision_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_super_experts_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("super_experts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_super_experts_state"))
        batch_op.drop_index(batch_op.f("ix_super_experts_revision_id"))
    op.drop_table("super_experts")
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.drop_column("expert")
