"""Leases and heartbeats, on SQLite and PostgreSQL: a job that outlasts its lease survives because
the worker heartbeats; a worker whose lease was taken over learns it from its heartbeat, gives the
job up during analysis, and writes nothing.

Both run a real Worker on a tiny planted model, detection only (validation adds nothing to what
is tested here, only minutes on a busy machine). The job is made to outlast the lease by a pause
in its fetch (as a slow download would), the one thing the tests add to the worker's own path.
"""

import logging
import time
from datetime import timedelta

from sqlalchemy import func, select

from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.models import ModelRevision, SuperWeight
from tests.helpers import take_over
from workers.worker.loop import HEARTBEATS_PER_LEASE, Worker, WorkerConfig

# Short, so that the tests take seconds; long enough for a heartbeat to be late on a busy machine
# (one beat every 0.67 s, and the lease survives two missed beats).
LEASE_SECONDS = 2.0
BEAT_SECONDS = LEASE_SECONDS / HEARTBEATS_PER_LEASE


def _job(sessions, job_id: int) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def _result_rows(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(ModelRevision)),
            session.scalar(select(func.count()).select_from(SuperWeight)),
        )


def test_heartbeats_keep_a_job_that_outlasts_its_lease(db_sessions, planted):
    job_id = service.submit(db_sessions, str(planted), model_id="local/slow").job.id
    worker = Worker(
        db_sessions, WorkerConfig(once=True, lease_seconds=LEASE_SECONDS, validate=False)
    )
    fetch = worker._fetch
    stall_seconds = 2.5 * LEASE_SECONDS

    def slow_fetch(job):
        time.sleep(stall_seconds)  # the lease would have run out twice over without heartbeats
        return fetch(job)

    worker._fetch = slow_fetch
    assert worker.run() == 1
    job = _job(db_sessions, job_id)
    assert (job.state, job.attempts, job.last_error) == (JobState.SUCCEEDED, 1, None)
    # The last heartbeat came well after the claim: the lease was extended while the job ran.
    assert job.heartbeat_at - job.started_at >= timedelta(seconds=stall_seconds - LEASE_SECONDS)
    assert _result_rows(db_sessions)[0] == 1


def test_a_worker_whose_lease_was_taken_over_gives_up_and_writes_nothing(
    db_sessions, planted, caplog
):
    job_id = service.submit(db_sessions, str(planted), model_id="local/taken").job.id
    worker = Worker(
        db_sessions, WorkerConfig(once=True, lease_seconds=LEASE_SECONDS, validate=False)
    )
    fetch = worker._fetch
    taken_over: dict[str, object] = {}

    def fetch_then_lose_the_lease(job):
        fetched = fetch(job)
        take_over(db_sessions, LEASE_SECONDS, owner="other-worker")
        taken_over["row"] = _row(_job(db_sessions, job.id))
        # Three heartbeat periods: this worker's heartbeat finds the lease gone meanwhile.
        time.sleep(3 * BEAT_SECONDS)
        return fetched

    worker._fetch = fetch_then_lose_the_lease
    with caplog.at_level(logging.INFO, logger="swreg.worker"):
        worker.run()

    # Nothing of this worker's was written: the job row is exactly as the other worker left it.
    assert _row(_job(db_sessions, job_id)) == taken_over["row"]
    assert taken_over["row"]["lease_owner"] == "other-worker"
    assert taken_over["row"]["state"] == JobState.RUNNING
    assert _result_rows(db_sessions) == (0, 0)
    # And it gave the job up during the analysis, as soon as its heartbeat saw the loss, rather
    # than analysing to the end and being refused at completion.
    messages = [r.getMessage() for r in caplog.records]
    assert f"job {job_id}: lease lost; abandoning the job" in messages, messages
    assert any(m.endswith("lease lost during analysis") for m in messages), messages
    assert not any("succeeded" in m or "before completion" in m for m in messages), messages


def _row(job: Job) -> dict:
    return {column.name: getattr(job, column.key) for column in Job.__mapper__.columns}
