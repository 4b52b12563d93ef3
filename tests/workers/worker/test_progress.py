"""A job's stage and progress, as the worker writes them while it runs: every write is recorded
by a database trigger, so the test sees each one, not samples of them."""

import pytest
from sqlalchemy import text

from registry.jobs import queue
from registry.jobs.models import Job, JobSource, JobState
from registry.jobs.queue import LeaseLost, write_transaction
from tests.helpers import add_jobs, worker_messages
from workers.contract.progress import JOB_STAGES
from workers.fixtures.planted import build_planted_model
from workers.worker.loop import ProgressWriter, Worker, WorkerConfig

LOG_TABLE = """
CREATE TABLE progress_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT, done INTEGER, total INTEGER, state TEXT
)"""
LOG_TRIGGER = """
CREATE TRIGGER log_progress AFTER UPDATE OF stage, progress_done, progress_total ON jobs
WHEN NEW.stage IS NOT NULL
BEGIN
    INSERT INTO progress_log (stage, done, total, state)
    VALUES (NEW.stage, NEW.progress_done, NEW.progress_total, NEW.state);
END"""


def _log_progress_writes(engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(LOG_TABLE))
        connection.execute(text(LOG_TRIGGER))


def _written(engine) -> list[tuple[str, int, int, str]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text("SELECT stage, done, total, state FROM progress_log ORDER BY id")
            )
        ]


def _assert_monotonic(writes) -> None:
    """Stages only move forward through JOB_STAGES; within a stage, `done` never goes back."""
    keys = [(JOB_STAGES.index(stage), done) for stage, done, _total, _state in writes]
    assert keys == sorted(keys), writes
    for stage, done, total, _state in writes:
        assert 0 <= done <= total, (stage, done, total)


def test_a_running_job_reports_every_stage_in_order(sqlite_sessions, tmp_path):
    engine, sessions = sqlite_sessions
    _log_progress_writes(engine)
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=3)
    from workers.sources.pinning import hash_local_weights, local_revision

    revision = local_revision(hash_local_weights(model.path))
    (job_id,) = add_jobs(
        sessions,
        1,
        prefix="me/tiny",
        revision=revision,
        source=JobSource.LOCAL,
        local_path=str(model.path),
    )
    # Every report written (no interval): the log then holds the whole run.
    worker = Worker(sessions, WorkerConfig(once=True, poll_seconds=0.1, progress_seconds=0.0))
    assert worker.run() == 1

    writes = _written(engine)
    _assert_monotonic(writes)
    # With no interval, every count of the stage that leads is written, one by one.
    for counted in ("load", "validate"):
        dones = [done for stage, done, _total, _state in writes if stage == counted]
        total = next(total for stage, _done, total, _state in writes if stage == counted)
        assert len(dones) > 2 and dones == list(range(dones[0], total + 1)), writes
    # The fetch is a stage of its own: reported as begun, then as done.
    assert [w[:3] for w in writes][:2] == [("fetch", 0, 1), ("fetch", 1, 1)]
    assert {w[0] for w in writes} == set(JOB_STAGES)
    assert writes[-1][:3] == ("score", writes[-1][2], writes[-1][2])
    assert all(state == JobState.RUNNING for *_, state in writes)
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.SUCCEEDED
        # The last progress stays: the job ended with its score stage done.
        assert (job.stage, job.progress_done) == ("score", job.progress_total)
        assert {"fetch", "load", "detect", "validate", "score", "total"} <= set(job.timings)


def test_stages_reported_side_by_side_never_move_the_job_back(sqlite_sessions):
    engine, sessions = sqlite_sessions
    _log_progress_writes(engine)
    (job_id,) = add_jobs(sessions, 1)
    with write_transaction(sessions) as session:
        _, lease = queue.claim(session, owner="w", lease_seconds=60)
    clock = iter(range(100)).__next__
    writer = ProgressWriter(
        sessions, lease, lambda: False, interval=10.0, clock=lambda: float(clock())
    )
    # The streamed sweep: detect and validate alternate layer by layer; older counts arrive late.
    for stage, done, total in [
        ("load", 0, 4),
        ("load", 4, 4),
        ("detect", 0, 3),
        ("validate", 0, 3),
        ("detect", 1, 3),
        ("validate", 1, 3),
        ("detect", 2, 3),
        ("validate", 2, 3),
        ("detect", 3, 3),
        ("validate", 3, 3),
        ("score", 0, 5),
        ("score", 5, 5),
    ]:
        writer(stage, done, total)
    writes = _written(engine)
    _assert_monotonic(writes)
    # A new stage and a finished stage are written at once; within the interval nothing else.
    assert [w[:3] for w in writes] == [
        ("load", 0, 4),
        ("load", 4, 4),
        ("detect", 0, 3),
        ("validate", 0, 3),
        ("validate", 3, 3),
        ("score", 0, 5),
        ("score", 5, 5),
    ]
    # The seconds of each stage so far, side-by-side stages both counted.
    with sessions() as session:
        timings = session.get(Job, job_id).timings
    assert timings == {"load": 1.0, "detect": 6.0, "validate": 6.0, "score": 1.0}


def test_a_lost_lease_stops_the_analysis_at_its_next_report(sqlite_sessions):
    _, sessions = sqlite_sessions
    add_jobs(sessions, 1)
    with write_transaction(sessions) as session:
        _, lease = queue.claim(session, owner="w", lease_seconds=60)
    lost = False
    writer = ProgressWriter(sessions, lease, lambda: lost, interval=0.0)
    writer("load", 0, 4)
    lost = True
    with pytest.raises(LeaseLost):
        writer("load", 1, 4)
    # Fenced out by the database too: another claim took the job (a stale lease).
    stale = queue.Lease(lease.job_id, "someone-else", lease.attempt)
    with pytest.raises(LeaseLost):
        ProgressWriter(sessions, stale, lambda: False, interval=0.0)("load", 2, 4)


def test_stages_the_worker_does_not_know_come_after_its_own_in_order_of_arrival(sqlite_sessions):
    engine, sessions = sqlite_sessions
    _log_progress_writes(engine)
    add_jobs(sessions, 1)
    with write_transaction(sessions) as session:
        _, lease = queue.claim(session, owner="w", lease_seconds=60)
    writer = ProgressWriter(sessions, lease, lambda: False, interval=0.0)
    last_known = JOB_STAGES[-1]
    # A newer analysis reports stages this worker has never heard of, between known ones.
    for stage in ["load", "calibrate", last_known, "export", "calibrate", "load"]:
        writer(stage, 1, 2)
    # "calibrate" and "export" rank after every known stage, in the order they first came: a
    # known stage reported after them, even the last, or the earlier unknown one, does not move
    # the job back.
    assert [w[0] for w in _written(engine)] == ["load", "calibrate", "export"]


def test_a_progress_write_the_database_refuses_costs_a_line_not_the_job(
    unreachable_sessions, caplog
):
    lease = queue.Lease(job_id=7, owner="w", attempt=1)
    writer = ProgressWriter(unreachable_sessions, lease, lambda: False, interval=60.0)
    with caplog.at_level("INFO", logger="swreg.worker"):
        writer("load", 0, 4)  # no exception: the analysis goes on
        writer("load", 1, 4)  # within the interval, but the last write failed: tried again
    messages = worker_messages(caplog)
    assert messages[0] == "job 7: load (0/4)"
    failures = [m for m in messages if "progress not recorded" in m]
    assert len(failures) == 2, messages
    assert failures[0].startswith("job 7: progress not recorded: OperationalError: ")


def test_a_count_is_written_once_the_interval_has_passed_and_seconds_to_the_millisecond(
    sqlite_sessions,
):
    engine, sessions = sqlite_sessions
    _log_progress_writes(engine)
    (job_id,) = add_jobs(sessions, 1)
    with write_transaction(sessions) as session:
        _, lease = queue.claim(session, owner="w", lease_seconds=60)
    times = iter([0.0, 0.5, 1.0, 1.23456, 5.5]).__next__
    writer = ProgressWriter(sessions, lease, lambda: False, interval=1.0, clock=times)
    writer("load", 0, 4)  # a new stage: written
    writer("load", 1, 4)  # 0.5 s later: within the interval, not written
    writer("load", 2, 4)  # exactly the interval later: written
    writer("load", 4, 4)  # finished: written
    writer("load", 4, 4)  # finished, reported again later: its seconds grow, written again
    assert [w[1] for w in _written(engine)] == [0, 2, 4, 4]
    with sessions() as session:
        assert session.get(Job, job_id).timings == {"load": 5.5}
    assert writer.timings == {"load": 5.5}


def test_stage_seconds_are_kept_to_the_millisecond(sqlite_sessions):
    _, sessions = sqlite_sessions
    add_jobs(sessions, 1)
    with write_transaction(sessions) as session:
        _, lease = queue.claim(session, owner="w", lease_seconds=60)
    times = iter([10.0, 11.23456]).__next__
    writer = ProgressWriter(sessions, lease, lambda: False, interval=0.0, clock=times)
    writer("load", 0, 4)
    writer("load", 1, 4)
    assert writer.timings == {"load": 1.235}
