"""A real PostgreSQL outage under a running `swreg serve` and a running `swreg worker`.

The test starts a PostgreSQL cluster of its own (initdb/pg_ctl from the machine's PostgreSQL
binaries, a temporary folder, a free port; as root they run as the `postgres` user), then:

1. starts the server and the worker while the cluster is down: both start; the server answers
   503 (no hang past its database timeout) and the worker waits;
2. starts the cluster: both recover without a restart;
3. submits a job and stops the cluster while the worker analyses it (the worker frozen with
   SIGSTOP meanwhile, so the job cannot end first): the API answers 503, the worker's completion
   write fails and is retried; the cluster comes back and the result is written exactly once, in
   the job's first attempt;
4. freezes the cluster (SIGSTOP on every PostgreSQL process): the API answers 503 within its
   timeout instead of hanging; thaws it (SIGCONT): the API answers again, without a restart.

About a minute on two cores (most of it the worker importing torch and analysing).
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from registry import migrate
from registry.database import make_engine, make_sessionmaker, transaction
from registry.index import service as index_service
from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.models import ModelRevision, SuperWeight
from tests.helpers import REPO_ROOT, free_port, freeze_inside_analysis, python_env
from workers.contract.resources import PUBLISHED_INDEX_PATH
from workers.fixtures.planted import build_planted_model

SWREG = [str(Path(sys.executable).with_name("swreg"))]
# The server's bound on a request's database work in this test, and the slack allowed on top
# (a loaded two-core machine).
API_TIMEOUT_S = 3.0
SLACK_S = 3.0
LEASE_SECONDS = 90
WAIT_S = 180
LOOKUP = "/api/v1/models/huggyllama/llama-7b"
# Jobs submitted at most to catch the worker inside one's analysis (see the test).
STAGING_TRIES = 3


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port>, data in a temporary folder."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="swreg-outage-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.as_root = os.geteuid() == 0
        if self.as_root:  # initdb and postgres refuse to run as root
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def signal(self, signum: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.signal(signal.SIGCONT)
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster():
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("SWREG_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are required", pytrace=False)
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    instance = Cluster(bin_dir)
    try:
        instance.init()
        yield instance
    finally:
        instance.remove()


def _until(predicate, what: str, timeout: float = WAIT_S, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def _get(client: httpx.Client, path: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = client.get(path).status_code
    except httpx.TransportError:
        status = 0
    return status, time.monotonic() - started


def _assert_503_in_time(client: httpx.Client, paths) -> None:
    for path in paths:
        status, elapsed = _get(client, path)
        assert status == 503, (path, status)
        assert elapsed < API_TIMEOUT_S + SLACK_S, (path, elapsed)


@pytest.mark.postgres
def test_stop_and_freeze_postgres_under_a_running_server_and_worker(cluster, tmp_path):
    cluster.start()
    migrate.upgrade(cluster.url)
    with transaction(migrate.open_registry(cluster.url)) as session:
        index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
    cluster.stop()
    model = build_planted_model("llama", tmp_path / "planted", num_layers=8).path

    port = free_port()
    env = python_env(
        SWREG_DATABASE_URL=cluster.url,
        SWREG_API_DATABASE_TIMEOUT_SECONDS=str(API_TIMEOUT_S),
        SWREG_DB_CONNECT_TIMEOUT_SECONDS="2",
        SWREG_DB_POOL_TIMEOUT_SECONDS="2",
        SWREG_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
        OMP_NUM_THREADS="1",
    )
    server_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
    with open(server_log, "w") as out:
        server = subprocess.Popen(
            [*SWREG, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    with open(worker_log, "w") as out:
        worker = subprocess.Popen(
            [*SWREG, "worker", "--poll-seconds", "0.2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    engine = None
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        # 1. Both start while the database is down.
        _until(lambda: _get(client, "/api/v1/health")[0] == 200, "the server to start")
        _assert_503_in_time(client, ["/api/v1/ready", LOOKUP, "/api/v1/jobs"])
        _until(lambda: "trying again" in worker_log.read_text(), "the worker to wait")
        assert server.poll() is None and worker.poll() is None

        # 2. The database comes back: both recover without a restart.
        cluster.start()
        _until(lambda: _get(client, "/api/v1/ready")[0] == 200, "the server to recover")
        assert client.get(LOOKUP).status_code == 200
        _until(lambda: "the database is back" in worker_log.read_text(), "the worker to recover")

        # 3. Stopped while the worker analyses a job: 503s, the completion write is retried,
        #    the result is written once.
        engine = make_engine(cluster.url)
        factory = make_sessionmaker(engine)

        def state(job_id: int) -> str:
            with factory() as session:
                return session.get(Job, job_id).state

        # The worker is frozen inside the job's analysis while the cluster stops, so the outage
        # meets the job before its completion however slowly this machine runs the test. A job
        # seen too late (already scoring) ends as usual, and another is tried.
        for attempt in range(STAGING_TRIES):
            model_id = f"local/outage-{attempt}"
            job_id = service.submit(factory, str(model), model_id=model_id).job.id
            if freeze_inside_analysis(worker, worker_log.read_text, job_id, WAIT_S):
                break
            _until(lambda job_id=job_id: state(job_id) == JobState.SUCCEEDED, "the job to end")
        else:
            log = worker_log.read_text()
            pytest.fail(f"every job was scoring before the worker stopped:\n{log}")
        assert state(job_id) == JobState.RUNNING
        engine.dispose()
        cluster.stop()
        worker.send_signal(signal.SIGCONT)
        _assert_503_in_time(client, ["/api/v1/ready", LOOKUP, "/api/v1/models", "/api/v1/jobs"])
        _until(
            lambda: "completion write failed" in worker_log.read_text(),
            "the worker to meet the outage at completion",
        )
        cluster.start()
        _until(lambda: state(job_id) == JobState.SUCCEEDED, "the job to succeed")
        with factory() as session:
            job = session.get(Job, job_id)
            assert job.attempts == 1, job.attempts
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(ModelRevision)
                    .where(ModelRevision.model_id == model_id)
                )
                == 1
            )
            keys = session.execute(
                select(SuperWeight.tensor, SuperWeight.index_key).where(
                    SuperWeight.revision_id == job.result_revision_id
                )
            ).all()
            assert keys and len(keys) == len(set(keys))
        _until(lambda: _get(client, f"/api/v1/models/{model_id}")[0] == 200, "the result")

        # 4. Frozen: answers within the timeout instead of hanging; thawed: answers again.
        engine.dispose()
        cluster.signal(signal.SIGSTOP)
        time.sleep(1)  # past the data version's reuse window: requests must ask the database
        _assert_503_in_time(client, ["/api/v1/ready", LOOKUP, "/api/v1/jobs", "/api/v1/jobs/1"])
        cluster.signal(signal.SIGCONT)
        _until(lambda: _get(client, "/api/v1/ready")[0] == 200, "the server to recover", 60)
        assert client.get(LOOKUP).status_code == 200
        assert server.poll() is None and worker.poll() is None

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker_log.read_text()[-3000:]
    except BaseException:
        print("--- serve log ---\n" + server_log.read_text()[-3000:])
        print("--- worker log ---\n" + worker_log.read_text()[-5000:])
        raise
    finally:
        if engine is not None:
            engine.dispose()
        for process in (worker, server):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
