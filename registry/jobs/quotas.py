"""Per-token limits on submissions: how many of a token's jobs may wait (queued or running)
and how many jobs it may create per minute. Past either, a submission is refused with 429 and
Retry-After. Admin tokens (`swreg token create --admin`) and the command line (an operator on
the registry's own machine) are exempt.

Checked in the submission's write transaction, under a lock per token (PostgreSQL: an advisory
transaction lock; SQLite: the transaction's write lock), so concurrent submissions of one token
cannot both pass the last free place.
"""

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from registry.errors import SwregError
from registry.jobs.models import Job, JobState
from registry.settings import get_settings

WINDOW = timedelta(minutes=1)


class QuotaExceeded(SwregError):
    """A token's limit is reached: ask again after `retry_after` seconds."""

    http_status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, retry_after)
        self.headers = {"Retry-After": str(self.retry_after)}


def check(session: Session, submitted_by: str, now: datetime) -> None:
    """Raise QuotaExceeded when `submitted_by` may not create another job now."""
    settings = get_settings()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"quota:{submitted_by}"}
        )
    waiting = session.scalar(
        select(func.count()).where(
            Job.submitted_by == submitted_by, Job.state.in_((JobState.QUEUED, JobState.RUNNING))
        )
    )
    waiting = waiting or 0  # COUNT always answers; None only in the type
    if waiting >= settings.quota_queued_jobs:
        raise QuotaExceeded(
            f"{submitted_by} has {waiting} jobs queued or running (limit "
            f"{settings.quota_queued_jobs}): submit more when some have finished",
            settings.quota_retry_after_seconds,
        )
    recent = list(
        session.scalars(
            select(Job.created_at)
            .where(Job.submitted_by == submitted_by, Job.created_at > now - WINDOW)
            .order_by(Job.created_at)
        )
    )
    if len(recent) >= settings.quota_submissions_per_minute:
        # The oldest in the window leaves it first: then there is room for one more.
        oldest = recent[len(recent) - settings.quota_submissions_per_minute]
        wait = (_aware(oldest) + WINDOW - now).total_seconds()
        raise QuotaExceeded(
            f"{submitted_by} submitted {len(recent)} jobs in the last minute (limit "
            f"{settings.quota_submissions_per_minute})",
            math.ceil(wait),
        )


def _aware(value: datetime) -> datetime:
    from registry.clock import as_utc

    return as_utc(value)
