"""`swreg db upgrade|current|downgrade` and `swreg setup` (upgrade + the published index)."""

import click
from sqlalchemy.exc import SQLAlchemyError

from registry import migrate
from registry.database import make_engine, transaction
from registry.errors import SwregError
from registry.index import service as index_service
from workers.contract.resources import PUBLISHED_INDEX_PATH


def _describe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """Manage the registry database schema (SWREG_DATABASE_URL)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Migrate the database to the newest schema (or to --revision)."""
    url = migrate.database_url()
    try:
        migrate.upgrade(url, revision)
    except SQLAlchemyError as exc:
        raise SwregError(f"cannot upgrade {_describe(url)}: {str(exc).splitlines()[0]}") from None
    click.echo(f"database {_describe(url)} is at schema {', '.join(_current(url)) or 'base'}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (`base` drops every table)."""
    url = migrate.database_url()
    migrate.downgrade(url, revision)
    click.echo(f"database {_describe(url)} is at schema {', '.join(_current(url)) or 'base'}")


@db.command()
def current() -> None:
    """Show the database's schema revision and whether it is the newest."""
    url = migrate.database_url()
    revisions = _current(url)
    heads = migrate.head_revisions()
    state = "up to date" if revisions == heads else "out of date: run `swreg db upgrade`"
    click.echo(f"{', '.join(revisions) or 'base (empty)'} (head: {', '.join(heads)}) {state}")


def _current(url: str) -> tuple[str, ...]:
    engine = make_engine(url)
    try:
        return migrate.current_revisions(engine)
    except SQLAlchemyError as exc:
        raise SwregError(f"cannot read {_describe(url)}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()


@click.command()
def setup() -> None:
    """Make a ready registry: migrate the database and load the published index (idempotent)."""
    url = migrate.database_url()
    migrate.upgrade(url)
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    with transaction(migrate.open_registry(url)) as session:
        stats = index_service.import_document(session, document)
    click.echo(f"database {_describe(url)} is ready: published index {stats.summary()}")
