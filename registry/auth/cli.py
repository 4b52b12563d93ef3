"""`swreg token create|list|revoke`: API tokens for the HTTP API's write endpoints.

The database and the token service are imported inside the commands, so that `swreg token -h`
loads neither.
"""

import json
from datetime import datetime

import click

from registry.clock import as_utc
from registry.console import table

# Times in the table to the minute: when a token was last used is what an operator asks.
DAY = "%Y-%m-%d"
MINUTE = "%Y-%m-%d %H:%M"


@click.group()
def token() -> None:
    """API tokens: `Authorization: Bearer <token>` on HTTP writes (reads are open).

    \b
    Examples:
      swreg token create bot
      swreg token list
      swreg token revoke bot
    """


@token.command("create")
@click.argument("name")
@click.option(
    "--admin",
    is_flag=True,
    help="An operator's token: exempt from the submission quotas, may set priorities.",
)
def create(name: str, admin: bool) -> None:
    """Create a token called NAME and print it; it is shown this once and stored hashed.

    \b
    Examples:
      swreg token create bot
      swreg token create release-bot > release-bot.token   # the secret alone on stdout
      swreg token create ops --admin
    """
    from registry.auth import service
    from registry.database import transaction
    from registry.migrate import open_registry

    with transaction(open_registry()) as session:
        _, secret = service.create_token(session, name, admin=admin)
    click.echo(secret)
    click.echo(f"token {name!r} created; it is not shown again", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as JSON.")
def list_(as_json: bool) -> None:
    """Tokens: name, prefix, created, last used, revoked.

    \b
    Examples:
      swreg token list
      swreg token list --json
    """
    from registry.auth import service
    from registry.database import transaction
    from registry.migrate import open_registry

    with transaction(open_registry()) as session:
        tokens = [
            {
                "name": t.name,
                "prefix": t.prefix,
                "created_at": as_utc(t.created_at),
                "last_used_at": as_utc(t.last_used_at),
                "revoked_at": as_utc(t.revoked_at),
            }
            for t in service.list_tokens(session)
        ]
    if as_json:
        click.echo(json.dumps(tokens, indent=2, sort_keys=True, default=datetime.isoformat))
        return
    rows = [
        [
            str(t["name"]),
            f"{t['prefix']}…",
            f"{t['created_at']:{DAY}}",
            f"{t['last_used_at']:{MINUTE}}" if t["last_used_at"] else "never used",
            f"REVOKED {t['revoked_at']:{DAY}}" if t["revoked_at"] else "-",
        ]
        for t in tokens
    ]
    for line in table(["name", "prefix", "created", "last used", "revoked"], rows):
        click.echo(line)


@token.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the live token called NAME (the row stays, for the record).

    \b
    Examples:
      swreg token revoke ci
    """
    from registry.auth import service
    from registry.database import transaction
    from registry.migrate import open_registry

    with transaction(open_registry()) as session:
        service.revoke_token(session, name)
    click.echo(f"token {name!r} revoked")
