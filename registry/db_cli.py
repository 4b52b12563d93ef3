"""`swreg db upgrade|current|downgrade` and `swreg setup` (upgrade + the published index).

Alembic, SQLAlchemy and the services are imported inside the commands, so that `swreg db -h`
loads none of them.
"""

import json
from typing import Literal

import click

from registry.errors import SwregError


def _describe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """Manage the registry database schema (SWREG_DATABASE_URL).

    \b
    Examples:
      swreg db current
      swreg db upgrade
      SWREG_DATABASE_URL=postgresql+psycopg://swreg@db-host/swreg swreg db upgrade
    """


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Migrate the database to the newest schema (or forward to --revision; `swreg db
    downgrade` goes back).

    \b
    Examples:
      swreg db upgrade
      SWREG_DATABASE_URL=sqlite:///older.db swreg db upgrade --revision 0010   # a new one, at 0010
    """
    _migrate("upgrade", revision)


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (`base` drops every table).

    \b
    Examples:
      swreg db downgrade 0005
      swreg db downgrade base     # drops every table
    """
    _migrate("downgrade", revision)


def _migrate(direction: Literal["upgrade", "downgrade"], revision: str) -> None:
    """`swreg db upgrade|downgrade`: migrate, a database error in one line, then say where the
    database is."""
    from sqlalchemy.exc import SQLAlchemyError

    from registry import migrate

    url = migrate.database_url()
    try:
        step = migrate.upgrade if direction == "upgrade" else migrate.downgrade
        step(url, revision)
    except SQLAlchemyError as exc:
        raise SwregError(
            f"cannot {direction} {_describe(url)}: {str(exc).splitlines()[0]}"
        ) from None
    click.echo(f"database {_describe(url)} is at schema {', '.join(_current(url)) or 'base'}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print the schema state as JSON.")
def current(as_json: bool) -> None:
    """Show the database's schema revision and whether it is the newest.

    \b
    Examples:
      swreg db current
      swreg db current --json
    """
    from registry import migrate

    url = migrate.database_url()
    revisions = _current(url)
    heads = migrate.head_revisions()
    if as_json:
        document = {
            "database": _describe(url),
            "revisions": list(revisions),
            "heads": list(heads),
            "up_to_date": revisions == heads,
        }
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    state = "up to date" if revisions == heads else "out of date: run `swreg db upgrade`"
    click.echo(f"{', '.join(revisions) or 'base (empty)'} (head: {', '.join(heads)}) {state}")


def _current(url: str) -> tuple[str, ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from registry import migrate
    from registry.database import make_engine

    engine = make_engine(url)
    try:
        return migrate.current_revisions(engine)
    except SQLAlchemyError as exc:
        raise SwregError(f"cannot read {_describe(url)}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


@click.command()
def setup() -> None:
    """Make a ready registry: migrate the database and load the published index and the
    reported super experts (idempotent).

    The reported super experts are those of Su et al., arXiv:2507.23279
    (data/reported_super_experts.json).

    The published index ships inside the installed package, so this works from any folder.

    \b
    Examples:
      swreg setup
      SWREG_DATABASE_URL=sqlite:///swreg.db swreg setup   # a database file in this folder
    """
    from registry import migrate
    from registry.database import transaction
    from registry.index import service as index_service
    from workers.contract.resources import PUBLISHED_INDEX_PATH, REPORTED_SUPER_EXPERTS_PATH

    url = migrate.database_url()
    migrate.upgrade(url)
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    reported = index_service.load_file(REPORTED_SUPER_EXPERTS_PATH)
    with transaction(migrate.open_registry(url)) as session:
        stats = index_service.import_document(session, document)
        experts = index_service.import_document(session, reported)
    click.echo(
        f"database {_describe(url)} is ready: published index {stats.summary()}; "
        f"reported super experts {experts.summary()}"
    )
