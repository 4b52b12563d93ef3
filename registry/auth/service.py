"""Creating, listing, revoking and checking API tokens."""

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.auth.models import ApiToken
from registry.errors import Conflict, InvalidInput, NotFound, SwregError

# "swreg_" makes a leaked token recognisable to secret scanners; 32 random bytes = 256 bits.
TOKEN_PREFIX = "swreg_"
TOKEN_BYTES = 32
SHOWN_PREFIX_CHARS = 10
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
# `last_used_at` is a hint, not an audit log: write it at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Unauthorized(SwregError):
    http_status = 401
    headers = {"WWW-Authenticate": "Bearer"}


def hash_token(token: str) -> str:
    # A plain sha256 suffices: the tokens are 256 random bits, not passwords, so there is no
    # dictionary to try and nothing for a slow salted hash (bcrypt, argon2) to protect; a fast
    # hash also lets us find the token by an indexed equality lookup.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, *, admin: bool = False) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret, which is shown once and never stored.
    An admin token is exempt from the submission quotas and may set priorities."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"invalid token name {name!r}: letters, digits and . _ @ - (at most 100 characters)"
        )
    if _live_token(session, name) is not None:
        raise Conflict(f"a token named {name!r} exists; revoke it first or choose another name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token = ApiToken(
        name=name, token_hash=hash_token(secret), prefix=secret[:SHOWN_PREFIX_CHARS], admin=admin
    )
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(session: Session, *, include_revoked: bool = True) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.name, ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_token(session: Session, name: str) -> ApiToken:
    token = _live_token(session, name)
    if token is None:
        raise NotFound(f"no live token named {name!r}")
    token.revoked_at = datetime.now(UTC)
    return token


def authenticate(session: Session, secret: str) -> ApiToken:
    """The live token whose secret this is; Unauthorized otherwise."""
    token = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_token(secret))
    ).one_or_none()
    if token is None or token.revoked_at is not None:
        raise Unauthorized("invalid or revoked API token")
    now = datetime.now(UTC)
    last_used = token.last_used_at
    if last_used is not None and last_used.tzinfo is None:
        last_used = last_used.replace(tzinfo=UTC)
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def _live_token(session: Session, name: str) -> ApiToken | None:
    return session.scalars(
        select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    ).one_or_none()
