"""model_id in binary order: on PostgreSQL an index on `model_id COLLATE "C"`, the order lists
page by (its default collation sorts by locale and its plain index cannot serve a "C" order);
SQLite compares text in binary order already, and its index on model_id serves it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_model_revisions_model_id_binary"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'CREATE INDEX {NAME} ON model_revisions (model_id COLLATE "C")')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX {NAME}")
