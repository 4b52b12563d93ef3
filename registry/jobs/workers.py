"""The workers seen: each worker's last heartbeat (when it last polled the queue or extended a
lease), and the job it held then. A person waiting on a queued job learns from it whether any
worker is alive (`swreg submit --wait`, `GET /api/v1/workers`).

One row per worker name (a name is unique per process start: `workers.worker.loop.worker_name`);
rows are kept, so a worker that stopped shows when it was last seen.
"""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from registry.clock import as_utc
from registry.database import Base
from registry.jobs.queue import database_now

# A worker polls every few seconds and heartbeats a third of its lease: silent this long, no
# worker is taking jobs (the waiting command says so).
SILENT_AFTER_SECONDS = 60.0
# How many workers the API lists (most recently seen first).
LISTED_WORKERS = 100


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # The job it held when last seen; None while it polled an empty queue.
    job_id: Mapped[int | None] = mapped_column(Integer)


def record_seen(session: Session, name: str, *, job_id: int | None) -> None:
    """The worker `name` is alive now (by the database's clock), holding `job_id` or none."""
    now = database_now(session)
    row = session.get(WorkerHeartbeat, name)
    if row is None:
        session.add(WorkerHeartbeat(name=name, first_seen_at=now, seen_at=now, job_id=job_id))
    else:
        row.seen_at, row.job_id = now, job_id


def seen(session: Session, limit: int = LISTED_WORKERS) -> list[WorkerHeartbeat]:
    """The workers, most recently seen first."""
    return list(
        session.scalars(
            select(WorkerHeartbeat).order_by(WorkerHeartbeat.seen_at.desc()).limit(limit)
        )
    )


def silence(session: Session) -> tuple[float | None, WorkerHeartbeat | None]:
    """Seconds since any worker was last seen (None: never), and that worker."""
    latest = next(iter(seen(session, limit=1)), None)
    if latest is None:
        return None, None
    return (database_now(session) - as_utc(latest.seen_at)).total_seconds(), latest
