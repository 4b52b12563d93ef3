"""Claiming, heartbeating and finishing jobs under a lease, on SQLite and PostgreSQL alike.

A worker claims a job with one atomic UPDATE, which hands it a `Lease`: the job id, the owner
name and the attempt number. Every later write of that worker (heartbeat, completion, failure,
release) is *fenced*: it only touches the row while the row still carries that owner and attempt
and the lease has not run out. A worker that stalled past its lease (and whose job another worker
may already have claimed) therefore cannot overwrite anything, and since the results are recorded
in the same transaction as the fenced completion, it records nothing either.

Time comes from the database on PostgreSQL (workers on several machines share one clock) and
from this process on SQLite (one machine, one clock). Every function takes an explicit `now` so
that tests can move time.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

# write_transaction and one_line live where they belong (the database, the errors); they are
# named here too because the queue's callers have always found them here.
from registry.database import write_transaction  # noqa: F401
from registry.errors import SwregError, one_line  # noqa: F401
from registry.jobs.models import Job, JobSource, JobState

# Retry backoff: a failed attempt n waits BASE * 2**(n-1) seconds before it is claimable again.
RETRY_BACKOFF_BASE_SECONDS = 30.0
ABANDONED_REASON = "the worker stopped heartbeating (crashed or cut off) on the last attempt"


class LeaseLost(SwregError):
    """The job is no longer ours: the lease ran out or another worker claimed it since."""


@dataclass(frozen=True)
class Lease:
    job_id: int
    owner: str
    # The job's `attempts` at claim time: a re-claim increments it, which fences the old owner.
    attempt: int


def database_now(session: Session) -> datetime:
    """The current time by the database's clock, timezone-aware UTC."""
    if session.get_bind().dialect.name == "postgresql":
        # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
        clock = session.scalar(select(func.clock_timestamp()))
        assert clock is not None  # clock_timestamp() always answers
        return clock.astimezone(UTC)
    return datetime.now(UTC)


# --- submitting -----------------------------------------------------------------------------


PENDING_STATES = (JobState.QUEUED, JobState.RUNNING)


def pending_job(session: Session, model_id: str, revision: str) -> Job | None:
    """The revision's queued or running job (the unique index allows at most one)."""
    return session.scalars(
        select(Job).where(
            Job.model_id == model_id, Job.revision == revision, Job.state.in_(PENDING_STATES)
        )
    ).one_or_none()


def active_job(session: Session, model_id: str, revision: str) -> Job | None:
    """The revision's pending job, else its latest succeeded one (None: never analysed, or
    every attempt failed)."""
    pending = pending_job(session, model_id, revision)
    if pending is not None:
        return pending
    return session.scalars(
        select(Job)
        .where(Job.model_id == model_id, Job.revision == revision, Job.state == JobState.SUCCEEDED)
        .order_by(Job.id.desc())
        .limit(1)
    ).one_or_none()


def enqueue(
    session: Session,
    *,
    model_id: str,
    revision: str,
    source: JobSource,
    max_attempts: int,
    requested_revision: str | None = None,
    local_path: str | None = None,
    submitted_by: str | None = None,
    force: bool = False,
    priority: int = 0,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """Queue a job for the revision, or return the one already queued, running or (unless
    `force`: analyse it again) succeeded. A forced re-analysis leaves the recorded result as it
    is until the new job records its own.

    Returns (job, created). Call inside `write_transaction`: the insert runs in a savepoint, so
    when a concurrent submission wins the race to the unique index, we read its row instead.
    """
    existing = (
        pending_job(session, model_id, revision)
        if force
        else active_job(session, model_id, revision)
    )
    if existing is not None:
        return existing, False
    now = now or database_now(session)
    seq = fair_seq_for(session, submitted_by)
    job = Job(
        model_id=model_id,
        revision=revision,
        requested_revision=requested_revision,
        source=source,
        local_path=local_path,
        submitted_by=submitted_by,
        priority=priority,
        fair_seq=seq,
        state=JobState.QUEUED,
        attempts=0,
        max_attempts=max_attempts,
        not_before=now,
        created_at=now,
        timings={},
        fetch={},
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:
        winner = pending_job(session, model_id, revision)
        if winner is None:  # the conflict was something else
            raise
        return winner, False
    return job, True


def fair_seq_for(session: Session, submitted_by: str | None) -> int:
    """The fair-share sequence number of a new job of `submitted_by` (start-time fair queuing):
    one past that submitter's last waiting job, but never before the head of the queue. A
    submitter with a thousand jobs queued thus holds numbers head..head+999, and a newcomer's
    job gets the head's number: it waits for at most one job of each other submitter."""
    waiting = or_(Job.state == JobState.QUEUED, Job.state == JobState.RUNNING)
    head = session.scalar(select(func.min(Job.fair_seq)).where(Job.state == JobState.QUEUED))
    if head is None:  # nothing queued: after everything so far
        head = (session.scalar(select(func.max(Job.fair_seq))) or 0) + 1
    same = Job.submitted_by.is_(None) if submitted_by is None else Job.submitted_by == submitted_by
    own = session.scalar(select(func.max(Job.fair_seq)).where(waiting, same))
    return head if own is None else max(own + 1, head)


# --- claiming -------------------------------------------------------------------------------


def _claimable(now: datetime):
    return or_(
        and_(Job.state == JobState.QUEUED, Job.not_before <= now),
        # A running job whose worker stopped heartbeating (crashed, killed, cut off).
        and_(
            Job.state == JobState.RUNNING,
            Job.lease_expires_at < now,
            Job.attempts < Job.max_attempts,
        ),
    )


def fail_abandoned(session: Session, *, now: datetime | None = None) -> int:
    """Fail running jobs whose lease ran out on their last allowed attempt: nobody may retry."""
    now = now or database_now(session)
    result = session.execute(
        update(Job)
        .where(
            Job.state == JobState.RUNNING,
            Job.lease_expires_at < now,
            Job.attempts >= Job.max_attempts,
        )
        .values(
            state=JobState.FAILED,
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error=ABANDONED_REASON,
        )
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult, result).rowcount  # an UPDATE: a cursor result


def claim(
    session: Session, *, owner: str, lease_seconds: float, now: datetime | None = None
) -> tuple[Job, Lease] | None:
    """Claim the next claimable job for `owner`, or None. Call inside `write_transaction`.

    The next job: the highest priority first (an operator's), then the lowest fair-share
    number (`fair_seq_for`: submitters take turns), then the oldest.

    One statement picks and updates the row. On PostgreSQL the sub-select locks the row it picks
    and skips rows other claimers hold (FOR UPDATE SKIP LOCKED), so concurrent claimers never
    wait on each other or get the same job; on SQLite the surrounding BEGIN IMMEDIATE serializes
    claimers (the FOR UPDATE clause is not rendered there).
    """
    now = now or database_now(session)
    fail_abandoned(session, now=now)
    next_id = (
        select(Job.id)
        .where(_claimable(now))
        .order_by(Job.priority.desc(), Job.fair_seq, Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    job = session.scalars(
        update(Job)
        .where(Job.id == next_id)
        .values(
            state=JobState.RUNNING,
            attempts=Job.attempts + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
            # A new attempt starts from nothing: its progress is its own.
            stage=None,
            progress_done=None,
            progress_total=None,
        )
        .returning(Job),
        execution_options={"populate_existing": True},
    ).one_or_none()
    if job is None:
        return None
    return job, Lease(job_id=job.id, owner=owner, attempt=job.attempts)


def _fenced(lease: Lease, now: datetime):
    return and_(
        Job.id == lease.job_id,
        Job.lease_owner == lease.owner,
        Job.attempts == lease.attempt,
        Job.state == JobState.RUNNING,
        Job.lease_expires_at > now,
    )


def _fenced_update(session: Session, lease: Lease, now: datetime, **values: Any) -> bool:
    result = session.execute(
        update(Job)
        .where(_fenced(lease, now))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult, result).rowcount == 1  # an UPDATE: a cursor result


# --- while running --------------------------------------------------------------------------


def heartbeat(
    session: Session, lease: Lease, *, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease; False when it is lost (expired, or the job was claimed by another)."""
    now = now or database_now(session)
    return _fenced_update(
        session,
        lease,
        now,
        heartbeat_at=now,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    )


def report_progress(
    session: Session,
    lease: Lease,
    *,
    stage: str,
    done: int,
    total: int,
    timings: dict[str, float] | None = None,
    now: datetime | None = None,
) -> bool:
    """Record what the attempt is doing: `done` of `total` units of `stage` (and, if given, the
    seconds its stages took so far). Fenced like every other write: False when the lease is lost,
    and then nothing is written."""
    now = now or database_now(session)
    values: dict[str, Any] = {"stage": stage, "progress_done": done, "progress_total": total}
    if timings is not None:
        values["timings"] = timings
    return _fenced_update(session, lease, now, **values)


def complete(
    session: Session,
    lease: Lease,
    *,
    record: Callable[[Session], int],
    timings: dict[str, float],
    fetch: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Mark the job succeeded and record its results, all in the caller's one transaction.

    The fenced UPDATE comes first: it raises LeaseLost (and the caller's transaction rolls back)
    before `record` writes anything, and on PostgreSQL it holds the row lock until the commit, so
    no claimer can take the job in between. `record` writes the results and returns the id of
    the model revision they belong to.
    """
    now = now or database_now(session)
    values: dict[str, Any] = {
        "state": JobState.SUCCEEDED,
        "finished_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": None,
        "timings": timings,
    }
    if fetch is not None:
        values["fetch"] = fetch
    if not _fenced_update(session, lease, now, **values):
        raise LeaseLost(f"job {lease.job_id}: lease lost before completion; nothing recorded")
    revision_id = record(session)
    session.execute(
        update(Job)
        .where(Job.id == lease.job_id)
        .values(result_revision_id=revision_id)
        .execution_options(synchronize_session=False)
    )
    return revision_id


def fail(
    session: Session,
    lease: Lease,
    error: BaseException | str,
    *,
    permanent: bool = False,
    backoff_base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    fetch: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> JobState:
    """Record a failed attempt: back to `queued` with backoff, or `failed` when it is permanent
    or the attempts are used up. Returns the new state; raises LeaseLost when fenced out."""
    now = now or database_now(session)
    max_attempts = session.scalar(select(Job.max_attempts).where(Job.id == lease.job_id))
    final = permanent or max_attempts is None or lease.attempt >= max_attempts
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": one_line(error),
    }
    if fetch is not None:
        values["fetch"] = fetch
    if final:
        values.update(state=JobState.FAILED, finished_at=now)
    else:
        delay = backoff_base_seconds * 2 ** (lease.attempt - 1)
        values.update(state=JobState.QUEUED, not_before=now + timedelta(seconds=delay))
    if not _fenced_update(session, lease, now, **values):
        raise LeaseLost(f"job {lease.job_id}: lease lost before recording the failure")
    return JobState.FAILED if final else JobState.QUEUED


def postpone(
    session: Session,
    lease: Lease,
    reason: BaseException | str,
    *,
    delay_seconds: float,
    now: datetime | None = None,
) -> bool:
    """Hand the job back because something it depends on is unavailable (the Hub, the
    database): like `release`, the attempt does not count, since the job itself did not fail;
    it is claimable again after `delay_seconds`, and `last_error` says why it waits. False when
    the lease was already lost."""
    now = now or database_now(session)
    return _hand_back(
        session,
        lease,
        now,
        not_before=now + timedelta(seconds=delay_seconds),
        last_error=one_line(f"waiting to retry: {one_line(reason)}"),
    )


def release(session: Session, lease: Lease, *, now: datetime | None = None) -> bool:
    """Hand an unfinished job back to the queue (the worker is stopping): the attempt does not
    count, since the job did not fail. False when the lease was already lost."""
    now = now or database_now(session)
    return _hand_back(session, lease, now, not_before=now)


def _hand_back(session: Session, lease: Lease, now: datetime, **values: Any) -> bool:
    """Back to the queue without counting the attempt (the job did not fail), if still ours."""
    return _fenced_update(
        session,
        lease,
        now,
        state=JobState.QUEUED,
        attempts=Job.attempts - 1,
        lease_owner=None,
        lease_expires_at=None,
        **values,
    )
