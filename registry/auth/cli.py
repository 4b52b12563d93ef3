"""`swreg token create|list|revoke`: API tokens for the HTTP API's write endpoints."""

import click

from registry.auth import service
from registry.clock import as_utc
from registry.database import transaction
from registry.migrate import open_registry


@click.group()
def token() -> None:
    """API tokens: `Authorization: Bearer <token>` on HTTP writes (reads are open)."""


@token.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create a token called NAME and print it; it is shown this once and stored hashed."""
    with transaction(open_registry()) as session:
        _, secret = service.create_token(session, name)
    click.echo(secret)
    click.echo(f"token {name!r} created; it is not shown again", err=True)


@token.command("list")
def list_() -> None:
    """Tokens: name, prefix, created, last used, revoked."""
    with transaction(open_registry()) as session:
        tokens = service.list_tokens(session)
    for t in tokens:
        used = as_utc(t.last_used_at)
        revoked = as_utc(t.revoked_at)
        line = (
            f"{t.name:<24} {t.prefix}…  created {as_utc(t.created_at):%Y-%m-%d}  "
            + (f"last used {used:%Y-%m-%d %H:%M}" if used else "never used")
            + (f"  REVOKED {revoked:%Y-%m-%d}" if revoked else "")
        )
        click.echo(line)


@token.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the live token called NAME (the row stays, for the record)."""
    with transaction(open_registry()) as session:
        service.revoke_token(session, name)
    click.echo(f"token {name!r} revoked")
