"""Stop signals sent to a real worker process while it holds a job: the first SIGTERM lets the
job finish and the worker exit without claiming the next one; a second stop signal hands the job
back to the queue at once (its attempt does not count) and the worker exits.

Each test starts one `python -m workers.worker` on a SQLite registry with three queued jobs on a
tiny planted model, freezes the worker (SIGSTOP) while it is inside one job's analysis, sends the
signals, and lets it go on (SIGCONT). A job lasts well under a second, so signals sent to a
running worker could arrive after the job ended on a loaded machine (CI saw it); a frozen worker
cannot move, so every signal lands while the job is held. The signal handling is the same
whatever the database; the fenced release itself is tested on both databases in
tests/registry/jobs/test_queue.py.
"""

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.models import ModelRevision
from tests.helpers import WORKER_CMD, freeze_inside_analysis, python_env

# Long enough that no heartbeat matters here; the jobs take seconds.
LEASE_SECONDS = 60
CLAIM_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 120
# Jobs queued: a freeze that comes too late for one job (its analysis already scoring) is tried
# again on the next.
JOBS = 3


class RunningWorker:
    """One `python -m workers.worker` process with its log in a file."""

    def __init__(self, url: str, log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("w")
        env = python_env(
            SWREG_DATABASE_URL=url,
            SWREG_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
            OMP_NUM_THREADS="1",
        )
        self.process = subprocess.Popen(
            [*WORKER_CMD, "--poll-seconds", "0.2"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_TIMEOUT_S)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def start_worker(sqlite_url, tmp_path):
    started: list[RunningWorker] = []

    def start() -> RunningWorker:
        worker = RunningWorker(sqlite_url, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.thaw()
        worker.kill()


def _submit(sessions, planted: Path) -> list[int]:
    return [
        service.submit(sessions, str(planted), model_id=f"local/job-{n}").job.id
        for n in range(JOBS)
    ]


def _job(sessions, job_id: int) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def _freeze_inside_a_job(sessions, worker: RunningWorker, job_ids: list[int]) -> int:
    """Freeze the worker while it holds one of the jobs, before that job's analysis scores
    (after which it only records the result); return that job's id. The jobs run in order."""
    for job_id in job_ids:
        if freeze_inside_analysis(worker.process, worker.log, job_id, CLAIM_TIMEOUT_S):
            held = _job(sessions, job_id)
            assert held.state == JobState.RUNNING, worker.log()
            assert f":{worker.process.pid}:" in held.lease_owner
            return job_id
    pytest.fail(f"every job was past its analysis before the worker stopped:\n{worker.log()}")


def _revisions(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(ModelRevision))


def test_first_sigterm_finishes_the_current_job_then_exits(sessions, planted, start_worker):
    jobs = _submit(sessions, planted)
    worker = start_worker()
    held = _freeze_inside_a_job(sessions, worker, jobs)
    worker.process.send_signal(signal.SIGTERM)
    worker.thaw()

    assert worker.wait() == 0, worker.log()
    done = _job(sessions, held)
    assert (done.state, done.attempts, done.last_error) == (JobState.SUCCEEDED, 1, None), (
        worker.log()
    )
    assert done.result_revision_id is not None
    # The signal arrived while the job was held, and the job still ran to its end.
    log = worker.log()
    received = log.find("SIGTERM received; finishing the current job")
    assert 0 <= received < log.index(f"job {held}: succeeded"), log
    # Nothing more was claimed.
    for later in jobs[jobs.index(held) + 1 :]:
        untouched = _job(sessions, later)
        assert (untouched.state, untouched.attempts, untouched.lease_owner) == (
            JobState.QUEUED,
            0,
            None,
        )
    assert _revisions(sessions) == jobs.index(held) + 1


def test_a_second_stop_signal_hands_the_job_back_to_the_queue(sessions, planted, start_worker):
    jobs = _submit(sessions, planted)
    worker = start_worker()
    held = _freeze_inside_a_job(sessions, worker, jobs)
    # Signals of one kind do not queue while the process is stopped, so the second is SIGINT,
    # which the worker handles as it does SIGTERM: both are pending when it goes on.
    worker.process.send_signal(signal.SIGTERM)
    worker.process.send_signal(signal.SIGINT)
    worker.thaw()

    assert worker.wait() == 0, worker.log()
    returned = _job(sessions, held)
    # Queued again as if never claimed: the attempt did not fail, so it does not count.
    assert (returned.state, returned.attempts, returned.lease_owner, returned.last_error) == (
        JobState.QUEUED,
        0,
        None,
        None,
    ), worker.log()
    log = worker.log()
    assert "received; finishing the current job" in log
    assert f"job {held}: handed back to the queue" in log
    assert f"job {held}: succeeded" not in log
    assert returned.result_revision_id is None and returned.finished_at is None
    for later in jobs[jobs.index(held) + 1 :]:
        assert _job(sessions, later).state == JobState.QUEUED
    assert _revisions(sessions) == jobs.index(held)
