"""The worker rides out outages, on SQLite and PostgreSQL: a completion write that the database
refuses is written again while the lease holds (the result is not thrown away, the attempt does
not count twice); a job that meets an unreachable Hub goes back to the queue without using up an
attempt; a worker started without its database waits for it. (A real PostgreSQL server stopped
and frozen under a worker is tests/test_outage.py.)"""

import logging
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from registry import migrate
from registry.database import make_engine, make_sessionmaker
from registry.errors import DatabaseOutOfDate
from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.settings import get_settings
from registry.superweights.models import SuperWeight
from tests.helpers import SHA, WORKER_CMD, add_jobs, python_env
from workers.worker.loop import Worker, WorkerConfig

# How long the database refuses writes at completion: several retries' worth.
LOCK_SECONDS = 3.0


@pytest.fixture
def short_statements(monkeypatch):
    """Statements give up after half a second (lock waits included), as a blip needs."""
    monkeypatch.setenv("SWREG_DB_STATEMENT_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class WriteBlocker:
    """Holds the database's write lock (SQLite) or an exclusive lock on the jobs table
    (PostgreSQL) from another connection for `seconds`: the worker's writes wait and time out."""

    def __init__(self, url: str, seconds: float):
        self.url, self.seconds = url, seconds
        self.holding = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        if self.url.startswith("sqlite"):
            connection = sqlite3.connect(make_url(self.url).database, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
            self.holding.set()
            time.sleep(self.seconds)
            connection.execute("ROLLBACK")
            connection.close()
            return
        engine = create_engine(self.url)
        with engine.connect() as connection:
            connection.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
            self.holding.set()
            time.sleep(self.seconds)
            connection.rollback()
        engine.dispose()

    def start(self) -> None:
        self.thread.start()
        assert self.holding.wait(10)


def test_a_refused_completion_write_is_retried_and_recorded_once(
    db_url, short_statements, planted_two_layers, caplog
):
    engine = make_engine(db_url)  # with the short statement timeout
    factory = make_sessionmaker(engine)
    try:
        job_id = service.submit(factory, str(planted_two_layers), model_id="local/planted").job.id
        worker = Worker(factory, WorkerConfig(once=True, lease_seconds=60))
        analyse = worker._analyse
        blocker = WriteBlocker(db_url, LOCK_SECONDS)

        def analyse_then_block(*args, **kwargs):
            report = analyse(*args, **kwargs)
            blocker.start()  # the database refuses writes just as the result is ready
            return report

        worker._analyse = analyse_then_block
        with caplog.at_level(logging.WARNING, logger="swreg.worker"):
            assert worker.run() == 1
        blocker.thread.join()
        with factory() as session:
            job = session.get(Job, job_id)
            assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1), job.last_error
            rows = session.scalars(
                select(SuperWeight).where(SuperWeight.revision_id == job.result_revision_id)
            ).all()
            keys = [(sw.tensor, sw.index_key) for sw in rows]
            assert keys and len(keys) == len(set(keys))
        retries = [r for r in caplog.records if "completion write failed" in r.getMessage()]
        assert retries, "the completion write never failed: the blip did not happen"
    finally:
        engine.dispose()


def test_an_unreachable_hub_hands_the_job_back_without_using_an_attempt(db_sessions, hub_down):
    (job_id,) = add_jobs(db_sessions, 1, prefix="acme/not-cached", revision=SHA)
    worker = Worker(db_sessions, WorkerConfig(once=True, lease_seconds=60))
    assert worker.run() == 1
    with db_sessions() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempts, job.lease_owner) == (JobState.QUEUED, 0, None)
        assert job.last_error.startswith("waiting to retry:")
        assert "unreachable" in job.last_error
        not_before = job.not_before.replace(tzinfo=job.not_before.tzinfo or UTC)
        assert not_before > datetime.now(UTC)


def test_a_worker_refuses_an_out_of_date_schema_at_once(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        worker = Worker(make_sessionmaker(engine), WorkerConfig(once=True))
        with pytest.raises(DatabaseOutOfDate):
            worker.run()
    finally:
        engine.dispose()


def test_a_worker_started_without_its_database_waits_for_it(tmp_path, planted_two_layers):
    blocker = tmp_path / "data"
    blocker.write_text("not yet a folder")
    url = f"sqlite:///{blocker}/swreg.db"
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [*WORKER_CMD, "--once", "--poll-seconds", "0.1"],
            env=python_env(SWREG_DATABASE_URL=url, OMP_NUM_THREADS="1"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "trying again" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        # The database is made ready elsewhere and moved into place in one rename: a worker
        # retrying between a mkdir and the migration would find an empty file and rightly
        # refuse it as out of date.
        staging = tmp_path / "staging"
        staging.mkdir()
        staging_url = f"sqlite:///{staging}/swreg.db"
        migrate.upgrade(staging_url)
        engine = make_engine(staging_url)
        try:
            staging_sessions = make_sessionmaker(engine)
            job_id = service.submit(
                staging_sessions, str(planted_two_layers), model_id="local/late"
            ).job.id
        finally:
            engine.dispose()
        blocker.unlink()
        staging.rename(blocker)
        engine = make_engine(url)
        try:
            factory = make_sessionmaker(engine)
            assert worker.wait(timeout=120) == 0, log.read_text()
            with factory() as session:
                assert session.get(Job, job_id).state == JobState.SUCCEEDED
                assert session.scalar(select(func.count()).select_from(Job)) == 1
        finally:
            engine.dispose()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
