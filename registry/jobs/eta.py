"""How long a running job has left, from measured rates (the API's `eta`, the job page, `swreg
submit --wait`).

Two measurements, the larger wins:

- **this job's pace**: the stage it shows has done `done` of `total` units in the seconds its
  timings give it so far, so the rest of the stage takes (total - done) at that pace; the stages
  after it take what they took on the registry's recent successful jobs (the median of the last
  HISTORY_JOBS);
- **the recent jobs' length**: their median total time less the time this job has run. A job
  whose shown stage is done may still be in a later validation pass (the shown stage never goes
  back), which the pace alone would call finished.

Without a recent job to measure later stages on, the estimate covers the shown stage only, and
says so (`scope`).
"""

from dataclasses import dataclass
from datetime import datetime
from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.clock import as_utc
from registry.jobs.models import Job, JobState
from workers.contract.progress import JOB_STAGES

# How many recent successful jobs measure the later stages and the usual length of a job.
HISTORY_JOBS = 20
TOTAL = "total"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    scope: str  # "job": every stage left; "stage": the shown stage only (nothing to measure on)
    basis: str  # in words, for the API and the page


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


def estimate(
    job: Job, recent: dict[str, float], now: datetime, jobs_measured: int
) -> Estimate | None:
    """The seconds a running job has left; None when nothing is measured yet (queued, or no
    unit of its stage done and no recent job to go by)."""
    if job.state != JobState.RUNNING or not job.stage or job.progress_total is None:
        return None
    done, total = job.progress_done or 0, job.progress_total
    elapsed_in_stage = float((job.timings or {}).get(job.stage) or 0.0)
    if done > 0 and elapsed_in_stage > 0:
        stage_left = max(total - done, 0) * elapsed_in_stage / done
    elif job.stage in recent:
        stage_left = max(recent[job.stage] - elapsed_in_stage, 0.0)
    else:
        return None
    later = JOB_STAGES[JOB_STAGES.index(job.stage) + 1 :] if job.stage in JOB_STAGES else ()
    if not recent:
        return Estimate(round(stage_left, 1), "stage", f"the pace of {job.stage} so far")
    paced = stage_left + sum(recent.get(stage, 0.0) for stage in later)
    ran = (now - as_utc(job.started_at)).total_seconds() if job.started_at else 0.0
    usual = recent.get(TOTAL, 0.0) - ran
    basis = (
        f"the pace of {job.stage} so far, and the later stages' median on the last "
        f"{jobs_measured} successful job{'s' if jobs_measured != 1 else ''}"
    )
    return Estimate(round(max(paced, usual, 0.0), 1), "job", basis)


def job_estimate(session: Session, job: Job) -> Estimate | None:
    """`estimate` for a job read in `session`, by the database's clock."""
    from registry.jobs.queue import database_now

    if job.state != JobState.RUNNING:
        return None
    recent, jobs_measured = recent_seconds(session)
    return estimate(job, recent, database_now(session), jobs_measured)
