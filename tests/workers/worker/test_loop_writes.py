"""The writes that end a worker's attempt, in one process on SQLite: a failure (retried with the
configured backoff, or final when permanent), a job handed back after an outage or at a stop, a
completion (written once, even when its reply is lost), and the retry of a write while the lease
lasts. Each names its job in the log, and none writes once the lease is lost."""

import logging
import time
from datetime import UTC, timedelta

import pytest

from registry.jobs import queue
from registry.jobs.models import Job, JobState
from registry.jobs.queue import LeaseLost
from registry.superweights.models import ModelRevision
from tests.helpers import take_over, worker_messages
from workers.contract.errors import Unavailable
from workers.contract.report import Report
from workers.science.errors import CheckpointRefused
from workers.sources.listing import FetchResult
from workers.worker import loop
from workers.worker.loop import (
    INFRASTRUCTURE_RETRY_SECONDS,
    LEASE_MARGIN_SECONDS,
    Worker,
    WorkerConfig,
)

BACKOFF_BASE_SECONDS = 100.0
# How far apart the database's clock and this test's reading of it may be.
CLOCK_SLACK = timedelta(seconds=5)


@pytest.fixture
def worker(sessions) -> Worker:
    return Worker(
        sessions,
        WorkerConfig(lease_seconds=60, backoff_base_seconds=BACKOFF_BASE_SECONDS),
        name="this-worker",
    )


def _job(sessions, job_id: int) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def _utc(moment):
    return moment.replace(tzinfo=moment.tzinfo or UTC)


def _now(sessions):
    with sessions() as session:
        return queue.database_now(session)


def _hub_outage() -> Unavailable:
    return Unavailable("the Hub did not answer")


def _fetched(tmp_path) -> FetchResult:
    return FetchResult(
        path=tmp_path,
        files=[{"name": "model.safetensors", "size": 10, "sha256": "a" * 64}],
        weight_sha256={"model.safetensors": "a" * 64},
        selected_bytes=10,
        downloaded_bytes=10,
        repo_bytes=30,
    )


# --- a failed attempt ----------------------------------------------------------------------


def test_a_failed_attempt_is_queued_again_after_the_configured_backoff(
    worker, sessions, claimed, log, tmp_path
):
    job, lease = claimed()
    fetched = _fetched(tmp_path)
    try:
        raise RuntimeError("a passing fault")
    except RuntimeError as error:
        assert worker._fail(job, lease, error, fetched) == JobState.QUEUED
    row = _job(sessions, job.id)
    assert (row.state, row.attempts, row.lease_owner) == (JobState.QUEUED, 1, None)
    assert row.last_error == "RuntimeError: a passing fault"
    assert row.fetch == fetched.summary()
    retry_in = _utc(row.not_before) - _now(sessions)
    assert abs(retry_in - timedelta(seconds=BACKOFF_BASE_SECONDS)) < CLOCK_SLACK
    (failure, queued) = [r for r in log.records if r.name == "swreg.worker"]
    # An unexpected failure is an error, with its traceback for whoever reads the log.
    assert failure.levelno == logging.ERROR and failure.exc_info[0] is RuntimeError
    assert failure.getMessage() == f"job {job.id}: attempt 1 failed: RuntimeError: a passing fault"
    assert queued.getMessage() == f"job {job.id}: queued for a retry"


def test_a_permanent_failure_ends_the_job_at_once_without_a_traceback(
    worker, sessions, claimed, log
):
    job, lease = claimed(max_attempts=3)
    refused = CheckpointRefused("acme/x: pickle-only checkpoint (never unpickled)")
    assert worker._fail(job, lease, refused, None) == JobState.FAILED
    row = _job(sessions, job.id)
    assert (row.state, row.attempts) == (JobState.FAILED, 1)
    assert row.last_error == "acme/x: pickle-only checkpoint (never unpickled)"
    assert row.fetch == {}  # nothing was fetched
    (failure, failed) = [r for r in log.records if r.name == "swreg.worker"]
    assert failure.levelno == logging.WARNING and not failure.exc_info
    assert failure.getMessage() == (
        f"job {job.id}: attempt 1 failed: acme/x: pickle-only checkpoint (never unpickled)"
    )
    assert failed.getMessage() == f"job {job.id}: failed"


def test_a_failure_found_after_the_lease_was_lost_writes_nothing(worker, sessions, claimed, log):
    job, lease = claimed()
    take_over(sessions)
    before = _job(sessions, job.id)
    assert worker._fail(job, lease, RuntimeError("late"), None) is None
    after = _job(sessions, job.id)
    assert (after.lease_owner, after.attempts, after.last_error) == (
        "another-worker",
        before.attempts,
        before.last_error,
    )
    assert worker_messages(log)[-1] == (
        f"job {job.id}: job {job.id}: lease lost before recording the failure"
    )


# --- handing a job back ----------------------------------------------------------------------


def test_a_job_interrupted_by_an_outage_is_handed_back_for_later(worker, sessions, claimed, log):
    job, lease = claimed()
    assert worker._postpone(job, lease, _hub_outage(), lambda: 60.0) == JobState.QUEUED
    row = _job(sessions, job.id)
    # The attempt did not count: the job itself did not fail.
    assert (row.state, row.attempts, row.lease_owner) == (JobState.QUEUED, 0, None)
    assert row.last_error == "waiting to retry: the Hub did not answer"
    retry_in = _utc(row.not_before) - _now(sessions)
    assert abs(retry_in - timedelta(seconds=INFRASTRUCTURE_RETRY_SECONDS)) < CLOCK_SLACK
    assert worker_messages(log) == [
        f"job {job.id}: attempt 1 interrupted by an outage (the Hub did not answer); "
        "handing it back for later"
    ]


def test_a_job_whose_lease_was_lost_is_not_handed_back(worker, sessions, claimed, log):
    job, lease = claimed()
    take_over(sessions)
    assert worker._postpone(job, lease, _hub_outage(), lambda: 60.0) is None
    assert _job(sessions, job.id).lease_owner == "another-worker"
    assert worker_messages(log, logging.WARNING)[-1] == (
        f"job {job.id}: lease lost before handing the job back"
    )


def test_a_job_that_cannot_be_handed_back_is_left_to_its_lease(
    sessions, unreachable_sessions, claimed, log
):
    job, lease = claimed()
    cut_off = Worker(unreachable_sessions, WorkerConfig(lease_seconds=60), name="cut-off")
    # No time left on the lease to try again: one try, then the lease's expiry hands it back.
    assert cut_off._postpone(job, lease, _hub_outage(), lambda: 0.0) is None
    gave_up, could_not = worker_messages(log, logging.ERROR)
    assert gave_up.startswith(f"job {job.id}: postpone write failed (OperationalError: ")
    assert gave_up.endswith(") and the lease runs out; giving up")
    assert could_not.startswith(f"job {job.id}: could not hand the job back: OperationalError: ")
    assert _job(sessions, job.id).state == JobState.RUNNING


def test_a_stopping_worker_hands_its_job_back_at_once(worker, sessions, claimed, log):
    job, lease = claimed()
    worker._release(lease)
    row = _job(sessions, job.id)
    assert (row.state, row.attempts, row.lease_owner) == (JobState.QUEUED, 0, None)
    # Claimable again at once: another worker can take it now.
    assert _utc(row.not_before) <= _now(sessions)
    assert worker_messages(log) == [f"job {job.id}: handed back to the queue"]


def test_a_stopping_worker_whose_lease_was_lost_hands_nothing_back(worker, sessions, claimed, log):
    job, lease = claimed()
    take_over(sessions)
    worker._release(lease)
    assert _job(sessions, job.id).lease_owner == "another-worker"
    assert worker_messages(log) == []


def test_a_stopping_worker_cut_off_from_its_database_says_the_lease_will_expire(
    unreachable_sessions, log
):
    lease = queue.Lease(job_id=7, owner="cut-off", attempt=1)
    Worker(unreachable_sessions, WorkerConfig(), name="cut-off")._release(lease)
    (message,) = worker_messages(log, logging.ERROR)
    assert message.startswith("job 7: could not hand the job back: OperationalError: ")
    assert message.endswith("(its lease will expire)")


# --- completion ------------------------------------------------------------------------------


@pytest.fixture
def planted_report(planted_reports) -> Report:
    return Report.model_validate(planted_reports("llama")[1])


def test_a_completion_whose_reply_was_lost_is_not_written_twice(
    worker, sessions, claimed, log, planted_report, tmp_path
):
    job, lease = claimed()
    fetched = _fetched(tmp_path)
    timings = {"fetch": 0.5, "total": 2.0}
    worker._complete(job, lease, planted_report, timings, fetched, lambda: 60.0)
    first = _job(sessions, job.id)
    assert (first.state, first.timings, first.fetch) == (
        JobState.SUCCEEDED,
        timings,
        fetched.summary(),
    )
    # The same write again, as after a commit whose reply never came: success, nothing new.
    worker._complete(job, lease, planted_report, timings, fetched, lambda: 60.0)
    assert worker_messages(log) == [f"job {job.id}: an earlier completion write had succeeded"]
    with sessions() as session:
        assert session.query(ModelRevision).count() == 1
        assert session.get(Job, job.id).result_revision_id == first.result_revision_id


def test_a_completion_after_another_attempt_succeeded_is_refused(
    worker, sessions, claimed, planted_report, tmp_path
):
    job, lease = claimed()
    worker._complete(job, lease, planted_report, {}, _fetched(tmp_path), lambda: 60.0)
    stale = queue.Lease(job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt - 1)
    with pytest.raises(LeaseLost):
        worker._complete(job, stale, planted_report, {}, _fetched(tmp_path), lambda: 60.0)


def test_only_a_success_under_the_same_attempt_counts_as_our_completion(
    worker, sessions, claimed, planted_report, tmp_path
):
    job, lease = claimed()
    assert not worker._completed_by(lease)  # running, not succeeded
    worker._complete(job, lease, planted_report, {}, _fetched(tmp_path), lambda: 60.0)
    assert worker._completed_by(lease)
    later = queue.Lease(job_id=lease.job_id, owner=lease.owner, attempt=lease.attempt + 1)
    assert not worker._completed_by(later)
    assert not worker._completed_by(queue.Lease(job_id=10**6, owner="x", attempt=1))


# --- trying a write again while the lease lasts --------------------------------------------


class Writes:
    """A write that fails with the given errors, one per try, then returns "written"."""

    def __init__(self, *errors: Exception):
        self.errors, self.tries = list(errors), 0

    def __call__(self) -> str:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        return "written"


@pytest.fixture
def delays(monkeypatch) -> list[int]:
    """Short, known backoff delays (0.2 s per failure so far); records the failure counts."""
    seen: list[int] = []

    def backoff(failures: int) -> float:
        seen.append(failures)
        return 0.2 * failures

    monkeypatch.setattr(loop, "outage_backoff", backoff)
    return seen


def test_a_write_refused_by_an_outage_is_tried_again_while_the_lease_lasts(
    worker, claimed, log, delays, unavailable_error
):
    job, _ = claimed()
    write = Writes(unavailable_error, unavailable_error)
    started = time.monotonic()
    assert worker._while_leased(job, "completion", write, lambda: 60.0) == "written"
    assert write.tries == 3 and delays == [1, 2]
    assert time.monotonic() - started >= 0.2 + 0.4  # it waited each delay out
    warnings = worker_messages(log, logging.WARNING)
    assert len(warnings) == 2
    for warning, delay in zip(warnings, ("0.2", "0.4"), strict=True):
        assert warning.startswith(f"job {job.id}: completion write failed (OperationalError: ")
        assert warning.endswith(f"); trying again in {delay} s")


def test_a_write_is_not_tried_again_when_the_lease_would_run_out(
    worker, claimed, log, delays, unavailable_error
):
    job, _ = claimed()
    write = Writes(unavailable_error)
    # After a 0.2 s wait just under the margin would be left.
    left = 0.2 + LEASE_MARGIN_SECONDS - 0.01
    with pytest.raises(type(unavailable_error)):
        worker._while_leased(job, "postpone", write, lambda: left)
    assert write.tries == 1
    (error,) = worker_messages(log, logging.ERROR)
    assert error.startswith(f"job {job.id}: postpone write failed (OperationalError: ")
    assert error.endswith(") and the lease runs out; giving up")
    assert worker_messages(log, logging.WARNING) == []


def test_a_write_is_tried_again_when_exactly_the_margin_would_be_left(
    worker, claimed, delays, unavailable_error
):
    job, _ = claimed()
    write = Writes(unavailable_error)
    assert worker._while_leased(job, "x", write, lambda: 0.2 + LEASE_MARGIN_SECONDS) == "written"
    assert write.tries == 2


def test_a_write_that_fails_for_another_reason_is_not_tried_again(worker, claimed, log, delays):
    job, _ = claimed()
    write = Writes(ValueError("a bug"))
    with pytest.raises(ValueError):
        worker._while_leased(job, "completion", write, lambda: 60.0)
    assert (write.tries, delays, worker_messages(log)) == (1, [], [])
