"""One row per submitted model revision: the unit a worker claims, leases, and finishes."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.clock import utcnow
from registry.database import Base, JSONType, one_of
from registry.jobs.states import TERMINAL_STATES, JobSource, JobState

__all__ = ["PENDING_JOB_PREDICATE", "TERMINAL_STATES", "Job", "JobSource", "JobState"]

# A revision has at most one pending (queued or running) job: a second submission returns it,
# and two concurrent submissions cannot both insert one (the loser gets an IntegrityError and
# reads the winner's row). Finished jobs do not count: a failed revision can be submitted again,
# and a succeeded one analysed again on request (`submit --force`), its jobs kept as history.
PENDING_JOB_PREDICATE = "state IN ('queued', 'running')"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"state IN {one_of(JobState)}", name="state"),
        CheckConstraint(f"source IN {one_of(JobSource)}", name="source"),
        Index(
            "uq_jobs_pending_revision",
            "model_id",
            "revision",
            unique=True,
            sqlite_where=text(PENDING_JOB_PREDICATE),
            postgresql_where=text(PENDING_JOB_PREDICATE),
        ),
        # The claim query: queued jobs whose backoff is over, oldest first.
        Index("ix_jobs_claim", "state", "not_before", "created_at"),
        # Fair share: the claim order (registry.jobs.queue.claim).
        Index("ix_jobs_fair", "state", "priority", "fair_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255), index=True)
    # A 40-hex commit sha (hub) or "sha256:<64 hex>" (local directory): never a branch name.
    revision: Mapped[str] = mapped_column(String(80))
    # What the submitter asked for ("main", a tag, a short sha), kept for the record.
    requested_revision: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(8))
    local_path: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    # Claimed first: higher priority (an operator's), then the lower fair-share sequence number,
    # which interleaves submitters (registry.jobs.queue.fair_seq_for).
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fair_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    # The lease: who holds the job and until when. `attempts` doubles as the fencing token.
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Backoff: a queued job is not claimed before this time.
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # What the running attempt is doing: a stage ("fetch", then the analysis's "load", "detect",
    # "validate", "score") and `progress_done` of `progress_total` units of it. Written by the
    # worker under its lease; cleared when an attempt starts.
    stage: Mapped[str | None] = mapped_column(String(16))
    progress_done: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    # Seconds per step: while running, the stages so far; after success, the last attempt's
    # fetch, load, detect, validate, score, total.
    timings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # What the fetch read: files with sha256 and size, bytes downloaded vs the repository's total.
    fetch: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_revisions.id", ondelete="RESTRICT")
    )
