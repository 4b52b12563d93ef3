"""Schema migrations (Alembic) and the check that a database is at the code's schema head.

Every command and the API open the registry through `open_registry()`, which refuses a database
whose schema is behind (or ahead of) the code with one line, as mlflow does.
"""

import re
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from registry.database import make_engine, make_sessionmaker
from registry.errors import DatabaseOutOfDate, DatabaseUnavailable, InvalidInput
from registry.resources import MIGRATIONS_DIR
from registry.settings import get_settings

OUT_OF_DATE = "database schema is out of date: run `swreg db upgrade`"
# Alembic's steps from where the database is (`-1`, `+2`, `head-1`, `base+3`).
RELATIVE_REVISION = re.compile(r"(heads?|base)?[+-]\d+")


def alembic_config(url: str | None = None) -> Config:
    # No alembic.ini: everything Alembic needs is set here, so an installed wheel migrates too.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's logging setup would reconfigure the application's loggers on every call.
    config.attributes["skip_logging"] = True
    if url:
        # ConfigParser interpolation: a literal % (URL-encoded passwords, options) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache
def head_revisions() -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def current_revisions(engine: Engine) -> tuple[str, ...]:
    try:
        with engine.connect() as connection:
            return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    except SQLAlchemyError as exc:
        # A server that is down or a path that cannot be opened: one line, not a traceback.
        shown = engine.url.render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot open database {shown}: {reason}") from None


def is_current(engine: Engine) -> bool:
    return current_revisions(engine) == head_revisions()


def check_current(engine: Engine) -> None:
    if not is_current(engine):
        raise DatabaseOutOfDate(OUT_OF_DATE)


def upgrade(url: str, revision: str = "head") -> None:
    _run(url, command.upgrade, revision)


def downgrade(url: str, revision: str) -> None:
    _run(url, command.downgrade, revision)


def _refuse_backwards(connection, fn, revision: str) -> None:
    """Alembic's upgrade to a revision older than the database's does nothing, silently, and
    its downgrade to a newer one fails with a traceback's worth of text: one line for each."""
    if revision in ("head", "heads", "base") or RELATIVE_REVISION.fullmatch(revision):
        return  # Alembic resolves these from where the database is
    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        target = scripts.get_revision(revision)
    except CommandError:
        known = [r.revision for r in scripts.walk_revisions()]
        raise InvalidInput(
            f"unknown schema revision {revision!r} (known: {min(known)} to {max(known)}, "
            "head or base)"
        ) from None
    assert target is not None  # a named revision
    for current in MigrationContext.configure(connection).get_current_heads():
        if current == target.revision:
            continue
        older = {r.revision for r in scripts.iterate_revisions(current, "base")}
        if fn is command.upgrade and target.revision in older:
            raise InvalidInput(
                f"the database is at schema {current}, newer than {target.revision}: "
                f"`swreg db downgrade {target.revision}` goes back to it"
            )
        if fn is command.downgrade and target.revision not in older:
            raise InvalidInput(
                f"the database is at schema {current}, older than {target.revision}: "
                f"`swreg db upgrade --revision {target.revision}` goes forward to it"
            )


def _run(url: str, fn, revision: str) -> None:
    engine = make_engine(url, timeouts=False)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite alters a table by copying it into a new one and dropping the old one
                # (Alembic's batch mode): with foreign keys enforced, dropping a table that rows
                # of another table reference fails. They are switched off for the migration (a
                # pragma that only takes effect outside a transaction) and every reference is
                # checked before it commits.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            try:
                with connection.begin():
                    _refuse_backwards(connection, fn, revision)
                    config = alembic_config(url)
                    config.attributes["connection"] = connection
                    try:
                        fn(config, revision)
                    except CommandError as exc:  # what Alembic refuses: one line
                        raise InvalidInput(f"cannot migrate to {revision!r}: {exc}") from None
                    if sqlite:
                        _check_references(connection)
            finally:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()
    finally:
        engine.dispose()


def _check_references(connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise InvalidInput(
            f"the migration left {len(broken)} broken reference(s), e.g. {table} row {rowid} "
            f"to {parent}: rolled back"
        )


def database_url(url: str | None = None) -> str:
    return url or get_settings().database_url


def open_registry(url: str | None = None) -> sessionmaker[Session]:
    """A session factory on the configured database, after checking its schema is at head."""
    engine = make_engine(database_url(url))
    check_current(engine)
    return make_sessionmaker(engine)
