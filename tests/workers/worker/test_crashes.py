"""Real worker processes sharing one queue, some killed with SIGKILL while they hold a job: every
job still ends `succeeded` exactly once, each records its own revision with exactly the
coordinates of its model (none lost or added by the takeover), nothing stays `running`, and the
survivors stop cleanly on SIGTERM.

PostgreSQL: 4 workers, 40 jobs (FOR UPDATE SKIP LOCKED). SQLite: 2 workers, 16 jobs (BEGIN
IMMEDIATE). The jobs are tiny planted models (a few distinct directories shared by many model
ids), so a job takes about a second; the lease is 5 s, so a killed worker's job is taken over
within seconds.
"""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.models import ModelRevision, SuperWeight, index_key
from tests.helpers import WORKER_CMD, freeze, python_env
from workers.fixtures.planted import PlantedModel, build_planted_model

LEASE_SECONDS = 5
MODEL_TYPES = ("llama", "qwen2", "gpt2")
RUN_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
POLL_S = 0.2


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> list[PlantedModel]:
    root = tmp_path_factory.mktemp("planted")
    return [build_planted_model(t, root / t, num_layers=2) for t in MODEL_TYPES]


def _owned_running(db_sessions, pid: int) -> list[int]:
    with db_sessions() as session:
        return list(
            session.scalars(
                select(Job.id).where(
                    Job.state == JobState.RUNNING, Job.lease_owner.like(f"%:{pid}:%")
                )
            )
        )


def _states(db_sessions) -> dict[str, int]:
    with db_sessions() as session:
        return dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())


def _run(db_url, db_sessions, planted, tmp_path, *, workers: int, jobs: int, kill: int) -> None:
    models = {i: planted[i % len(planted)] for i in range(jobs)}
    ids = [
        service.submit(db_sessions, str(models[i].path), model_id=f"crash/m{i:02d}").job.id
        for i in range(jobs)
    ]
    # One torch thread per worker: several workers share two cores.
    env = python_env(
        SWREG_DATABASE_URL=db_url, SWREG_JOB_LEASE_SECONDS=str(LEASE_SECONDS), OMP_NUM_THREADS="1"
    )
    logs = [open(tmp_path / f"worker-{i}.log", "w") for i in range(workers)]
    procs = [
        subprocess.Popen(
            [*WORKER_CMD, "--poll-seconds", str(POLL_S)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    killed: dict[int, list[int]] = {}
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # Kill `kill` workers, each while it holds a job: frozen first, so that the job it is
        # seen to hold is still running when the kill lands.
        while len(killed) < kill and time.monotonic() < deadline:
            for proc in procs[:kill]:
                if proc.pid in killed:
                    continue
                freeze(proc)
                if held := _owned_running(db_sessions, proc.pid):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    killed[proc.pid] = held
                else:
                    proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        assert len(killed) == kill, "workers never held a job"
        while time.monotonic() < deadline:
            states = _states(db_sessions)
            if states.get(JobState.SUCCEEDED, 0) + states.get(JobState.FAILED, 0) == jobs:
                break
            time.sleep(0.5)
        survivors = procs[kill:]
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)
        for proc in survivors:
            assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    worker_logs = "\n".join(
        (tmp_path / f"worker-{i}.log").read_text()[-3000:] for i in range(workers)
    )

    with db_sessions() as session:
        rows = {j.id: j for j in session.scalars(select(Job))}
        assert set(rows) == set(ids)
        not_done = {
            j.id: (j.state, j.last_error) for j in rows.values() if j.state != JobState.SUCCEEDED
        }
        assert not not_done, f"{not_done}\n{worker_logs}"
        # Each job recorded its own revision, once.
        assert len({j.result_revision_id for j in rows.values()}) == jobs
        assert session.scalar(select(func.count()).select_from(ModelRevision)) == jobs
        recorded: dict[int, set[tuple]] = {}
        for sw in session.scalars(select(SuperWeight)):
            recorded.setdefault(sw.revision_id, set()).add((sw.tensor, sw.index_key, sw.state))
        # ...with exactly its model's coordinates: every job on the same model the same set
        # (whether or not it was taken over), its planted weights verified and no others.
        by_model: dict[Path, set[tuple]] = {}
        for i, job_id in enumerate(ids):
            job, model = rows[job_id], models[i]
            revision = session.get(ModelRevision, job.result_revision_id)
            assert (revision.model_id, revision.revision) == (job.model_id, job.revision)
            coordinates = recorded.get(revision.id, set())
            assert coordinates == by_model.setdefault(model.path, coordinates), job.model_id
            verified = {(t, k) for t, k, state in coordinates if state == "verified"}
            assert verified == _planted(model), job.model_id
        # The jobs the killed workers held were taken over: a second attempt each.
        for held in killed.values():
            for job_id in held:
                assert rows[job_id].attempts == 2, rows[job_id].attempts


def _planted(model: PlantedModel) -> set[tuple[str, str]]:
    return {
        (model.down_proj_tensor(p.layer), index_key(model.stored_index(p))) for p in model.plants
    }


@pytest.mark.postgres
def test_four_workers_two_killed_on_postgres(postgres_schema, planted, tmp_path):
    from registry import migrate
    from registry.database import make_engine, make_sessionmaker

    url = postgres_schema()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        _run(url, make_sessionmaker(engine), planted, tmp_path, workers=4, jobs=40, kill=2)
    finally:
        engine.dispose()


def test_two_workers_one_killed_on_sqlite(planted, tmp_path, sqlite_url, sessions):
    _run(sqlite_url, sessions, planted, tmp_path, workers=2, jobs=16, kill=1)
