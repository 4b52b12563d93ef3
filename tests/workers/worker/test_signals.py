"""Stop signals sent to a real worker process while it holds a job: the first SIGTERM lets the
job finish and the worker exit without claiming the next one; a second SIGTERM hands the job back
to the queue at once (its attempt does not count) and the worker exits.

Each test starts one `python -m workers.worker` on a SQLite registry with two queued jobs on a
tiny planted model, waits until the worker holds the first, and signals it. The signal handling
is the same whatever the database; the fenced release itself is tested on both databases in
tests/registry/jobs/test_queue.py.
"""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry import migrate
from registry.database import make_engine, make_sessionmaker
from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.models import ModelRevision
from tests.helpers import WORKER_CMD, python_env

# Long enough that no heartbeat matters here; the jobs take seconds.
LEASE_SECONDS = 60
POLL_S = 0.05
CLAIM_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 120


@pytest.fixture
def planted(planted_models) -> Path:
    # A job on it lasts a couple of seconds; a signal is handled within milliseconds.
    return planted_models("llama").path


@pytest.fixture
def registry(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield url, make_sessionmaker(engine)
    engine.dispose()


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

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process.poll() is None, f"worker exited early:\n{self.log()}"
            assert time.monotonic() < deadline, f"never logged {text!r}:\n{self.log()}"
            time.sleep(POLL_S)

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
def start_worker(registry, tmp_path):
    url, _ = registry
    started: list[RunningWorker] = []

    def start() -> RunningWorker:
        worker = RunningWorker(url, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def _submit_two(sessions, planted: Path) -> tuple[int, int]:
    first = service.submit(sessions, str(planted), model_id="local/first").job.id
    second = service.submit(sessions, str(planted), model_id="local/second").job.id
    return first, second


def _wait_until_running(sessions, job_id: int, worker: RunningWorker) -> None:
    """Until the worker process holds the job (its pid is in the lease owner's name)."""
    deadline = time.monotonic() + CLAIM_TIMEOUT_S
    while True:
        with sessions() as session:
            job = session.get(Job, job_id)
            if job.state == JobState.RUNNING:
                assert f":{worker.process.pid}:" in job.lease_owner
                return
            assert job.state == JobState.QUEUED, (job.state, worker.log())
        assert worker.process.poll() is None, f"worker exited:\n{worker.log()}"
        assert time.monotonic() < deadline, f"the job was never claimed:\n{worker.log()}"
        time.sleep(POLL_S)


def _job(sessions, job_id: int) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def _revisions(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(ModelRevision))


def test_first_sigterm_finishes_the_current_job_then_exits(registry, planted, start_worker):
    _, sessions = registry
    first, second = _submit_two(sessions, planted)
    worker = start_worker()
    _wait_until_running(sessions, first, worker)
    worker.process.send_signal(signal.SIGTERM)

    assert worker.wait() == 0, worker.log()
    done = _job(sessions, first)
    assert (done.state, done.attempts, done.last_error) == (JobState.SUCCEEDED, 1, None), (
        worker.log()
    )
    assert done.result_revision_id is not None
    # The signal arrived while the job was held, and the job still ran to its end.
    log = worker.log()
    received = log.find("SIGTERM received; finishing the current job")
    assert 0 <= received < log.index(f"job {first}: succeeded"), log
    # Nothing more was claimed.
    untouched = _job(sessions, second)
    assert (untouched.state, untouched.attempts, untouched.lease_owner) == (
        JobState.QUEUED,
        0,
        None,
    )
    assert _revisions(sessions) == 1


def test_second_sigterm_hands_the_job_back_to_the_queue(registry, planted, start_worker):
    _, sessions = registry
    first, second = _submit_two(sessions, planted)
    worker = start_worker()
    _wait_until_running(sessions, first, worker)
    worker.process.send_signal(signal.SIGTERM)
    # Signals do not queue: wait until the first one was handled before sending the second.
    worker.wait_for_log("SIGTERM received", timeout=CLAIM_TIMEOUT_S)
    worker.process.send_signal(signal.SIGTERM)

    assert worker.wait() == 0, worker.log()
    returned = _job(sessions, first)
    # Queued again as if never claimed: the attempt did not fail, so it does not count.
    assert (returned.state, returned.attempts, returned.lease_owner, returned.last_error) == (
        JobState.QUEUED,
        0,
        None,
        None,
    ), worker.log()
    assert f"job {first}: handed back to the queue" in worker.log()
    assert returned.result_revision_id is None and returned.finished_at is None
    assert _job(sessions, second).state == JobState.QUEUED
    assert _revisions(sessions) == 0
