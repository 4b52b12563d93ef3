"""The app's database handle and the FastAPI dependencies shared by every router.

Every piece of database work of a request goes through `Database.call`: it runs in a worker
thread, bounded by `api_database_timeout_seconds`, and turns any "the database cannot be used
now" error into DatabaseUnavailable (503). The bound is kept in the server, so it holds even
against a database that accepts connections and never answers (a frozen one): the request
answers 503 and the stuck thread is left to finish on its own (it holds one pooled connection,
and the pool's own timeout bounds how many can pile up).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from registry.database import is_unavailable, make_engine, make_sessionmaker
from registry.errors import DatabaseUnavailable
from registry.migrate import check_current
from registry.settings import get_settings

log = logging.getLogger("swreg.api")

T = TypeVar("T")


@dataclass
class Database:
    """The app's engine and session factory. The schema is checked on first use and the check
    is remembered only once it has succeeded, so a server started before `swreg db upgrade`, or
    while the database is down, answers 503 with the reason until the database is ready."""

    engine: Engine
    sessionmaker: sessionmaker[Session]
    timeout: float
    _checked: bool = field(default=False, repr=False)

    @classmethod
    def from_url(cls, url: str) -> "Database":
        engine = make_engine(url)
        return cls(
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            timeout=get_settings().api_database_timeout_seconds,
        )

    def ensure_current(self) -> None:
        if not self._checked:
            check_current(self.engine)
            self._checked = True

    def _guarded(self, fn: Callable[..., T], *args) -> T:
        try:
            self.ensure_current()
            return fn(*args)
        except SQLAlchemyError as exc:
            if not is_unavailable(exc):
                raise
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            log.warning("database unavailable: %s", reason)
            raise DatabaseUnavailable(f"the database is unavailable: {reason}") from None

    async def call(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` in a worker thread, after the schema check, within the timeout."""
        with anyio.move_on_after(self.timeout):
            return await anyio.to_thread.run_sync(
                partial(self._guarded, fn, *args), abandon_on_cancel=True
            )
        log.warning("database work took longer than %g s", self.timeout)
        raise DatabaseUnavailable(f"the database did not answer within {self.timeout:g} s")

    async def read(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a fresh session (closed afterwards), within the timeout."""
        return await self.call(self._in_session, work, False)

    async def write(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in one transaction, committed when it returns, within the timeout."""
        return await self.call(self._in_session, work, True)

    def _in_session(self, work: Callable[[Session], T], commit: bool) -> T:
        with self.sessionmaker() as session:
            result = work(session)
            if commit:
                session.commit()
            return result

    def dispose(self) -> None:
        self.engine.dispose()


def get_database(request: Request) -> Database:
    return request.app.state.database


DatabaseDep = Annotated[Database, Depends(get_database)]
