"""coordinate sources: every source of a published or reported coordinate, disputes, and the
`reported` state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

OLD_STATES = "state IN ('published', 'candidate', 'verified', 'rejected', 'retracted')"
NEW_STATES = "state IN ('published', 'reported', 'candidate', 'verified', 'rejected', 'retracted')"


def upgrade() -> None:
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sources", JSONType, nullable=True))
        batch_op.add_column(sa.Column("disputed_with", JSONType, nullable=True))
        batch_op.drop_constraint(op.f("ck_super_weights_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_super_weights_state"), NEW_STATES)
    # Existing rows have no recorded sources and no disputes.
    op.execute("UPDATE super_weights SET sources = '[]', disputed_with = '[]'")
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.alter_column("sources", existing_type=JSONType, nullable=False)
        batch_op.alter_column("disputed_with", existing_type=JSONType, nullable=False)


def downgrade() -> None:
    # The older schema has no `reported` state: such rows go back to `published`, as the shipped
    # index of that schema stated them.
    op.execute("UPDATE super_weights SET state = 'published' WHERE state = 'reported'")
    with op.batch_alter_table("super_weights", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_super_weights_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_super_weights_state"), OLD_STATES)
        batch_op.drop_column("disputed_with")
        batch_op.drop_column("sources")
