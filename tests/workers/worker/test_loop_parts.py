"""The worker loop's small parts, in one process on SQLite: the outage backoff and what counts as
an outage, the worker's name, its settings and log format, the heartbeat thread, and the figures
it logs. (The loop itself: test_loop_run.py; the writes that end an attempt:
test_loop_writes.py.)"""

import logging
import os
import re
import socket
import time
from datetime import UTC, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import IntegrityError

from registry.jobs import queue
from registry.jobs.models import Job
from registry.jobs.queue import Lease
from registry.settings import get_settings
from tests.helpers import take_over, worker_messages
from workers.contract.errors import Unavailable
from workers.science.errors import CheckpointRefused
from workers.worker.loop import (
    HEARTBEATS_PER_LEASE,
    LOG_FORMAT,
    OUTAGE_BACKOFF_MAX_SECONDS,
    Heartbeat,
    WorkerConfig,
    _state_counts,
    _step_timings,
    configure_logging,
    is_infrastructure_failure,
    outage_backoff,
    worker_name,
)

# Short leases, so that heartbeats come often; long enough for a beat to be late under load.
LEASE_SECONDS = 1.5
DRAWS = 400


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


# --- outages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, OUTAGE_BACKOFF_MAX_SECONDS), (40, 60.0)],
)
def test_the_outage_backoff_doubles_up_to_a_minute_drawn_between_half_and_all(failures, ceiling):
    draws = [outage_backoff(failures) for _ in range(DRAWS)]
    assert ceiling / 2 <= min(draws) and max(draws) <= ceiling
    # Jitter: the draws spread over the range (400 uniform draws fill well over half of it).
    assert max(draws) - min(draws) > ceiling / 4


def test_only_an_unavailable_dependency_counts_as_an_outage(unavailable_error):
    assert is_infrastructure_failure(unavailable_error)
    assert is_infrastructure_failure(Unavailable("the Hub did not answer"))
    # A fault in what was asked, a refused checkpoint, a bug: the job's own failures.
    assert not is_infrastructure_failure(IntegrityError("INSERT", {}, Exception("UNIQUE")))
    assert not is_infrastructure_failure(CheckpointRefused("pickle-only checkpoint"))
    assert not is_infrastructure_failure(ValueError("a bug"))


# --- who the worker is and how it is set up ------------------------------------------------


def test_a_worker_is_named_by_its_host_its_process_and_its_start():
    first, second = worker_name(), worker_name()
    host, pid, token = first.rsplit(":", 2)
    assert (host, pid) == (socket.gethostname(), str(os.getpid()))
    assert re.fullmatch(r"[0-9a-f]{6}", token), token
    # A restarted worker with the same pid is another lease owner.
    assert first != second


@pytest.fixture
def settings_env(monkeypatch):
    for name, value in {
        "SWREG_DEVICE": "cuda",
        "SWREG_JOB_LEASE_SECONDS": "120",
        "SWREG_MAX_CHECKPOINT_BYTES": "1000",
        "SWREG_QUANTIZE_CHECK": "1",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_worker_takes_its_settings_from_the_environment(settings_env):
    config = WorkerConfig.from_settings()
    assert (config.device, config.max_checkpoint_bytes, config.quantize_check) == (
        "cuda",
        1000,
        True,
    )
    assert config.lease_seconds == 120.0 and isinstance(config.lease_seconds, float)
    # What no setting names keeps its default.
    assert (config.once, config.max_jobs, config.validate) == (False, None, True)


def test_a_flag_overrides_its_setting_and_an_absent_flag_leaves_it(settings_env):
    config = WorkerConfig.from_settings(device="cpu", once=True, max_jobs=None, poll_seconds=0.5)
    assert (config.device, config.once, config.max_jobs, config.poll_seconds) == (
        "cpu",
        True,
        None,
        0.5,
    )
    assert WorkerConfig.from_settings(device=None).device == "cuda"


def test_the_worker_log_shows_time_level_and_process_and_quiets_alembic(monkeypatch):
    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    # A bare root logger, as in a fresh `swreg worker` process (pytest's own handlers set aside).
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(alembic, "level", logging.NOTSET)
    configure_logging()
    (handler,) = root.handlers
    assert handler.formatter._fmt == LOG_FORMAT
    assert (root.level, alembic.level) == (logging.INFO, logging.WARNING)
    monkeypatch.setattr(root, "handlers", [])
    configure_logging(logging.DEBUG)
    assert root.level == logging.DEBUG


# --- the heartbeat -------------------------------------------------------------------------


def _lease_expiry(sessions, job_id: int):
    with sessions() as session:
        expires = session.get(Job, job_id).lease_expires_at
        now = queue.database_now(session)
    return expires.replace(tzinfo=expires.tzinfo or UTC), now


def test_a_heartbeat_extends_the_lease_while_the_job_runs(sessions, claimed):
    job, lease = claimed(lease_seconds=LEASE_SECONDS)
    beat = Heartbeat(sessions, lease, LEASE_SECONDS)
    assert beat.interval == pytest.approx(LEASE_SECONDS / HEARTBEATS_PER_LEASE)
    assert beat.daemon and beat.name == f"heartbeat-{job.id}"
    claimed_at = beat.renewed_at
    assert LEASE_SECONDS - 0.5 < beat.lease_left() <= LEASE_SECONDS
    beat.start()
    try:
        # Twice the lease: without the beats it would have run out.
        time.sleep(2 * LEASE_SECONDS)
        assert beat.is_alive() and not beat.lost.is_set()
        assert beat.renewed_at > claimed_at
        assert 0 < beat.lease_left() <= LEASE_SECONDS
        expires, now = _lease_expiry(sessions, job.id)
        assert now < expires <= now + timedelta(seconds=LEASE_SECONDS)
    finally:
        beat.stop()
    # stop() returns once the thread has ended: nothing writes after it.
    assert not beat.is_alive()


def test_the_lease_is_counted_from_the_claim_when_the_claim_time_is_given(sessions, claimed):
    _, lease = claimed(lease_seconds=LEASE_SECONDS)
    claimed_at = time.monotonic() - 1.0
    beat = Heartbeat(sessions, lease, LEASE_SECONDS, renewed_at=claimed_at)
    assert beat.renewed_at == claimed_at
    assert beat.lease_left() <= LEASE_SECONDS - 1.0


def test_a_heartbeat_that_finds_the_lease_taken_flags_it_and_ends(sessions, claimed, caplog):
    job, lease = claimed(lease_seconds=LEASE_SECONDS)
    take_over(sessions, LEASE_SECONDS)
    beat = Heartbeat(sessions, lease, LEASE_SECONDS)
    renewed_at = beat.renewed_at
    with caplog.at_level(logging.INFO, logger="swreg.worker"):
        beat.start()
        assert beat.lost.wait(10)
        beat.join(10)
    assert not beat.is_alive()
    assert beat.renewed_at == renewed_at
    assert worker_messages(caplog) == [f"job {job.id}: lease lost; abandoning the job"]


def test_a_heartbeat_that_cannot_reach_the_database_keeps_trying(unreachable_sessions, caplog):
    lease = Lease(job_id=7, owner="this-worker", attempt=1)
    beat = Heartbeat(unreachable_sessions, lease, 0.3)
    renewed_at = beat.renewed_at
    with caplog.at_level(logging.INFO, logger="swreg.worker"):
        beat.start()
        try:
            _wait_for(lambda: len(worker_messages(caplog)) >= 2)
            # A failed beat is no lost lease: the lease may still have time.
            assert beat.is_alive() and not beat.lost.is_set()
            assert beat.renewed_at == renewed_at
        finally:
            beat.stop()
    for message in worker_messages(caplog):
        assert message.startswith("job 7: heartbeat failed: OperationalError: "), message
        assert "unable to open database file" in message


def test_stopping_a_heartbeat_from_its_own_thread_does_not_wait_for_itself(sessions, claimed):
    _, lease = claimed(lease_seconds=LEASE_SECONDS)
    beat = Heartbeat(sessions, lease, LEASE_SECONDS)
    errors: list[BaseException] = []

    def stop_itself() -> None:  # as the beat that finds its lease lost ends itself
        try:
            beat.stop()
        except BaseException as error:  # joining itself would raise RuntimeError
            errors.append(error)

    beat.run = stop_itself
    beat.start()
    beat.join(10)
    assert not beat.is_alive() and beat._halt.is_set()
    assert errors == []


# --- what the worker logs of a result ------------------------------------------------------


def test_the_step_timings_are_the_analysis_own_without_its_total():
    report = SimpleNamespace(timings={"load": 1.23456, "detect": 0.1, "total": 9.0})
    assert _step_timings(report) == {"load": 1.235, "detect": 0.1}


def test_the_success_line_counts_super_weights_by_state():
    states = ["verified", "unverified", "verified"]
    report = SimpleNamespace(super_weights=[SimpleNamespace(state=s) for s in states])
    assert _state_counts(report) == "1 unverified, 2 verified"
    assert _state_counts(SimpleNamespace(super_weights=[])) == ""
