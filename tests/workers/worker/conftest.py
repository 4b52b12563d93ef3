"""Fixtures of the worker's tests: its log, a migrated SQLite registry (sessions and URL), one that
cannot be opened, a job claimed from the queue, and the planted models its jobs analyse."""

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry import migrate
from registry.database import make_engine, make_sessionmaker
from registry.jobs import queue
from registry.jobs.models import Job
from registry.jobs.queue import Lease, write_transaction
from tests.helpers import add_jobs


@pytest.fixture
def planted(planted_models) -> Path:
    """The planted Llama's folder (four layers, built once per session)."""
    return planted_models("llama").path


@pytest.fixture(scope="session")
def planted_two_layers(tmp_path_factory) -> Path:
    """A two-layer planted Llama: the quickest real job, for the outage and Hub tests."""
    from workers.fixtures.planted import build_planted_model

    return build_planted_model(
        "llama", tmp_path_factory.mktemp("planted") / "llama", num_layers=2
    ).path


@pytest.fixture
def log(caplog):
    """caplog, recording what the worker logs from INFO up."""
    caplog.set_level(logging.INFO, logger="swreg.worker")
    return caplog


@pytest.fixture
def sqlite_sessions(tmp_path) -> Iterator[tuple]:
    """(engine, sessionmaker) of a migrated SQLite registry."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine, make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def sessions(sqlite_sessions) -> sessionmaker[Session]:
    return sqlite_sessions[1]


@pytest.fixture
def sqlite_url(sqlite_sessions) -> str:
    """The URL of that registry, for a worker process to open."""
    return sqlite_sessions[0].url.render_as_string(hide_password=False)


@pytest.fixture
def unreachable_sessions(tmp_path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a SQLite file that cannot be opened (its folder is a file): every statement
    fails as a database that is down does."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    engine = make_engine(f"sqlite:///{blocker}/registry.db")
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def unavailable_error(unreachable_sessions) -> OperationalError:
    """The error a statement on a database that is down raises (a real one, caught)."""
    with unreachable_sessions() as session:
        try:
            session.connection()
        except OperationalError as error:
            return error
    raise AssertionError("the unreachable database could be opened")


@pytest.fixture
def claimed(sessions) -> Callable[..., tuple[Job, Lease]]:
    """Queue a job (add_jobs' keywords) and claim it: (the job as claimed, its lease)."""

    made = iter(range(1_000_000))

    def claim(
        *, lease_seconds: float = 60.0, owner: str = "this-worker", **job
    ) -> tuple[Job, Lease]:
        add_jobs(sessions, 1, **{"prefix": f"org/claimed-{next(made)}", **job})
        with write_transaction(sessions) as session:
            claimed = queue.claim(session, owner=owner, lease_seconds=lease_seconds)
            assert claimed is not None
            return claimed

    return claim
