"""Whether any worker is alive: workers record a heartbeat at every poll and lease extension,
`GET /api/v1/workers` lists them, and `swreg submit --wait` says when none has been seen for a
while instead of waiting in silence."""

from datetime import timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.cli import main
from registry.jobs import queue, workers
from registry.migrate import open_registry
from tests.helpers import REPO, make_checkpoint
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.worker.loop import Worker, WorkerConfig


@pytest.fixture
def runner():
    return CliRunner()


def test_a_polling_worker_is_seen_and_listed(cli_env, db_sessions):
    with TestClient(create_app(cli_env)) as client:
        assert client.get("/api/v1/workers").json() == {
            "items": [],
            "silent_after_seconds": workers.SILENT_AFTER_SECONDS,
        }
        worker = Worker(open_registry(), WorkerConfig(once=True), name="w-test")
        assert worker.run() == 0  # an empty queue: it polled once and stopped
        (seen,) = client.get("/api/v1/workers").json()["items"]
    assert (seen["name"], seen["job_id"]) == ("w-test", None)
    assert 0 <= seen["seconds_since_seen"] < 30
    assert seen["seen_at"] >= seen["first_seen_at"]


def test_wait_says_when_no_worker_was_ever_seen(cli_env, runner, tmp_path, hf_cache):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    waited = runner.invoke(main, ["submit", REPO, "--wait", "--timeout", "0.5"])
    assert waited.exit_code == 1
    lines = waited.stderr.splitlines()
    assert "job 1: no worker has been seen yet: start one with `swreg worker`" in lines[1]
    assert lines[-1].startswith(
        "error: job 1 is still queued after 0.5 s: no worker has been seen yet"
    )


def test_wait_says_how_long_the_last_worker_has_been_silent(
    cli_env, db_sessions, runner, tmp_path, hf_cache
):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    with queue.write_transaction(db_sessions) as session:
        workers.record_seen(session, "w-old", job_id=None)
    with queue.write_transaction(db_sessions) as session:
        row = session.get(workers.WorkerHeartbeat, "w-old")
        row.seen_at = row.seen_at - timedelta(minutes=10)
    waited = runner.invoke(main, ["submit", REPO, "--wait", "--timeout", "0.5"])
    assert waited.exit_code == 1
    note = next(
        line for line in waited.stderr.splitlines() if "no worker has been seen for" in line
    )
    seconds = int(note.split("seen for ")[1].split(" s")[0])
    assert 600 <= seconds < 700 and "(last: w-old)" in note


def test_wait_says_nothing_while_a_worker_is_alive(
    cli_env, db_sessions, runner, tmp_path, hf_cache
):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    with queue.write_transaction(db_sessions) as session:
        workers.record_seen(session, "w-busy", job_id=None)
    waited = runner.invoke(main, ["submit", REPO, "--wait", "--timeout", "0.5"])
    assert "no worker" not in waited.stderr
    assert waited.stderr.splitlines()[-1] == "error: job 1 is still queued after 0.5 s"
