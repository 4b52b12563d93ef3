"""FastAPI dependencies shared by every router: one database session per request."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry.database import make_engine, make_sessionmaker
from registry.migrate import check_current


@dataclass
class Database:
    """The app's engine and session factory; its schema is checked on first use, so a server
    started before `swreg db upgrade` answers 503 with the one-line reason instead of failing
    with SQL errors."""

    engine: Engine
    sessionmaker: sessionmaker[Session]
    _checked: bool = field(default=False, repr=False)

    @classmethod
    def from_url(cls, url: str) -> "Database":
        engine = make_engine(url)
        return cls(engine=engine, sessionmaker=make_sessionmaker(engine))

    def ensure_current(self) -> None:
        if not self._checked:
            check_current(self.engine)
            self._checked = True

    def dispose(self) -> None:
        self.engine.dispose()


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    database.ensure_current()
    return database


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.sessionmaker() as session:
        yield session


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
