"""Engine, sessions and the declarative base shared by every domain's models.

Every engine carries short limits (settings `db_*_timeout_seconds`): opening a connection,
running one statement, waiting for a pooled connection. A database that is down or stuck is then
an error within seconds (`is_unavailable` tells those errors apart), never a hang.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import JSON, Engine, MetaData, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from registry.settings import Settings, get_settings

# Named constraints, so that Alembic's batch mode on SQLite can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON everywhere, stored as JSONB on PostgreSQL (indexable, compact); plain JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")

# libpq counts connect_timeout in whole seconds and takes 2 as its least value.
MIN_PG_CONNECT_TIMEOUT_S = 2
# Without statement limits (migrations), a SQLite writer still gives up on a lock after this.
UNBOUNDED_SQLITE_BUSY_TIMEOUT_MS = 120_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def one_of(values) -> str:
    """The SQL list `('a', 'b')` of allowed values, for a CHECK constraint."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # connecting will fail with the reason; a server still starts (and answers 503)


def is_unavailable(error: BaseException) -> bool:
    """Whether a database error means "the database cannot be used now" (down, unreachable,
    locked or too slow: worth retrying) rather than a fault in what was asked."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError))


def make_engine(url: str, *, settings: Settings | None = None, timeouts: bool = True) -> Engine:
    """An engine on `url` with the settings' connect, statement and pool timeouts (`timeouts=False`
    leaves statements unbounded: migrations may take long on a large database)."""
    settings = settings or get_settings()
    statement_ms = round(settings.db_statement_timeout_seconds * 1000) if timeouts else 0
    pool_timeout = settings.db_pool_timeout_seconds
    if url.startswith("sqlite"):
        _prepare_sqlite_file(url)
        # A file opens at once or not at all; what can take long is waiting for another
        # writer's lock, which the busy timeout bounds.
        busy_ms = statement_ms or UNBOUNDED_SQLITE_BUSY_TIMEOUT_MS
        engine = create_engine(
            url, connect_args={"timeout": busy_ms / 1000}, pool_timeout=pool_timeout
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()

        return engine
    connect_args: dict = {
        "connect_timeout": max(
            MIN_PG_CONNECT_TIMEOUT_S, math.ceil(settings.db_connect_timeout_seconds)
        )
    }
    if statement_ms:
        # Appended to the URL's own `options` (e.g. a search_path), which connect_args replace.
        options = make_url(url).query.get("options") or ""
        if isinstance(options, tuple):
            options = " ".join(options)
        connect_args["options"] = f"{options} -c statement_timeout={statement_ms}".strip()
    return create_engine(
        url, pool_pre_ping=True, pool_timeout=pool_timeout, connect_args=connect_args
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed as a whole, or rolled back as a whole on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def write_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that takes the database's write lock at its first statement.

    On SQLite a plain (deferred) transaction reads first and upgrades to a write lock later; two
    claimers could then both read the same queued job. `BEGIN IMMEDIATE` takes the write lock up
    front, so claimers run one after the other (each waits up to the busy timeout). The sqlite3
    driver issues no BEGIN of its own for it (it only does so before DML outside a transaction),
    and its commit()/rollback() end the transaction we began. PostgreSQL needs nothing: the claim
    locks its row with FOR UPDATE SKIP LOCKED.
    """
    with factory() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
