"""API tokens, stored hashed: the database never holds a usable secret."""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from registry.clock import utcnow
from registry.database import Base

# A name belongs to one live token; a revoked token keeps its row (and its name) for the record.
LIVE_TOKEN_PREDICATE = "revoked_at IS NULL"


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        Index(
            "uq_api_tokens_live_name",
            "name",
            unique=True,
            sqlite_where=text(LIVE_TOKEN_PREDICATE),
            postgresql_where=text(LIVE_TOKEN_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # sha256 hex of the token: lookups by equality on an indexed column.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, so that a user can tell tokens apart in `token list`.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An operator's token: exempt from the submission quotas (registry.jobs.quotas).
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
