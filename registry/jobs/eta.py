"""How long a running job has left, from measured rates (the API's `eta`, the job page, `swreg
submit --wait`): `registry.time_left`'s formula over the job's shown stage, with the recent
successful jobs of the registry (the median of the last HISTORY_JOBS) as what later stages take.
"""

from datetime import datetime
from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.clock import as_utc
from registry.jobs.models import Job, JobState
from registry.time_left import Estimate, Measured, time_left
from workers.contract.progress import JOB_STAGES

# How many recent successful jobs measure the later stages and the usual length of a job.
HISTORY_JOBS = 20


def recent_seconds(session: Session) -> tuple[dict[str, float], int]:
    """The median seconds of each stage (and in all) over the recent successful jobs, and how
    many jobs that is."""
    rows = session.scalars(
        select(Job.timings)
        .where(Job.state == JobState.SUCCEEDED)
        .order_by(Job.finished_at.desc())
        .limit(HISTORY_JOBS)
    ).all()
    found: dict[str, list[float]] = {}
    for timings in rows:
        for stage, seconds in (timings or {}).items():
            if isinstance(seconds, (int, float)):
                found.setdefault(stage, []).append(float(seconds))
    return {stage: median(values) for stage, values in found.items()}, len(rows)


def ran_seconds(job: Job, now: datetime) -> float:
    """The seconds the job has run so far (since its claim), by `now`'s clock."""
    return (now - as_utc(job.started_at)).total_seconds() if job.started_at else 0.0


def estimate(
    job: Job, recent: dict[str, float], now: datetime, jobs_measured: int
) -> Estimate | None:
    """The seconds a running job has left; None when nothing is measured yet (queued, or no
    unit of its stage done and no recent job to go by)."""
    if job.state != JobState.RUNNING or not job.stage or job.progress_total is None:
        return None
    plural = "s" if jobs_measured != 1 else ""
    measured = Measured(recent, jobs_measured, f"last {{n}} successful job{plural}")
    timings = {
        stage: float(seconds)
        for stage, seconds in (job.timings or {}).items()
        if isinstance(seconds, (int, float))
    }
    return time_left(
        JOB_STAGES,
        job.stage,
        {job.stage: (job.progress_done or 0, job.progress_total)},
        timings.get(job.stage, 0.0),
        ran_seconds(job, now),
        measured,
        # No `finished` stages (the job's speed): a running job's timings are wall time from a
        # stage's first progress report to its latest (detection's spans the validation beside
        # it), a finished job's the analysis's own per-stage times; they do not compare (a job
        # measured so read three times slower than it ran).
    )


def job_estimate(session: Session, job: Job) -> Estimate | None:
    """`estimate` for a job read in `session`, by the database's clock."""
    from registry.jobs.queue import database_now

    if job.state != JobState.RUNNING:
        return None
    recent, jobs_measured = recent_seconds(session)
    return estimate(job, recent, database_now(session), jobs_measured)
