"""Re-analysis: a revision already done is analysed again on request (`force`: the queue, the
HTTP API, `swreg submit --force` with a real worker); the recorded result stays until the new
job records its own, and the new evidence names the detector version that produced it."""

import copy
import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.cli import main
from registry.database import transaction
from registry.jobs import queue
from registry.jobs.models import JobSource, JobState
from registry.superweights import service
from tests.helpers import REPO, SHA_A, make_checkpoint, smollm2_like_report
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.fixtures.planted import build_planted_model

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
OLD_DETECTOR, NEW_DETECTOR = "0.0.9", "0.1.0+upgraded"


def _report(detector: str) -> dict:
    """The SmolLM2-like report as the given detector version writes it."""
    report = copy.deepcopy(smollm2_like_report())
    report["detector"]["version"] = detector
    for sw in report["super_weights"]:
        sw["evidence"]["code_version"] = detector
    return report


def _enqueue(db_sessions, *, force: bool):
    with queue.write_transaction(db_sessions) as session:
        job, created = queue.enqueue(
            session,
            model_id=MODEL,
            revision=SHA_A,
            source=JobSource.HUB,
            max_attempts=3,
            force=force,
        )
        return job.id, created


def _run_next_job(db_sessions, report: dict) -> int:
    """Claim the next job and complete it as a worker does, recording `report`."""
    with queue.write_transaction(db_sessions) as session:
        job, lease = queue.claim(session, owner="worker-1", lease_seconds=600)
    with queue.write_transaction(db_sessions) as session:
        queue.complete(
            session,
            lease,
            timings={"total": 1.0},
            record=lambda s: (
                service.record_report(
                    s, model_id=MODEL, revision=SHA_A, revision_kind="commit", report=report
                ).id
            ),
        )
    return job.id


def _verified(db_sessions) -> dict:
    with transaction(db_sessions) as session:
        document = service.lookup_document(session, MODEL, SHA_A)
    return next(sw for sw in document["revisions"][0]["super_weights"] if sw["state"] == "verified")


def test_a_forced_submission_queues_a_new_analysis_and_keeps_the_old_result_until_it_lands(
    db_sessions,
):
    first, created = _enqueue(db_sessions, force=False)
    assert created and _run_next_job(db_sessions, _report(OLD_DETECTOR)) == first

    assert _enqueue(db_sessions, force=False) == (first, False)  # done: its job answers
    second, created = _enqueue(db_sessions, force=True)
    assert created and second != first
    assert _enqueue(db_sessions, force=True) == (second, False)  # one pending job at a time

    # Until the new job lands, lookups answer with the old result.
    old = _verified(db_sessions)
    assert old["provenance"]["detector_version"] == OLD_DETECTOR
    assert old["evidence"]["code_version"] == OLD_DETECTOR

    assert _run_next_job(db_sessions, _report(NEW_DETECTOR)) == second
    new = _verified(db_sessions)
    assert new["provenance"]["detector_version"] == NEW_DETECTOR
    assert new["evidence"]["code_version"] == NEW_DETECTOR
    with transaction(db_sessions) as session:
        states = {j.id: j.state for j in session.query(queue.Job)}
    assert states == {first: JobState.SUCCEEDED, second: JobState.SUCCEEDED}  # history kept
    assert _enqueue(db_sessions, force=False) == (second, False)  # the latest analysis answers


def test_the_api_queues_a_forced_submission(db_url, db_sessions, token, tmp_path, hf_cache):
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(db_url)) as client:
        first = client.post("/api/v1/submissions", json={"model": REPO}, headers=auth).json()["job"]
        with queue.write_transaction(db_sessions) as session:
            session.get(queue.Job, first["id"]).state = JobState.SUCCEEDED
        again = client.post("/api/v1/submissions", json={"model": REPO}, headers=auth)
        assert (again.status_code, again.json()["job"]["id"]) == (200, first["id"])
        forced = client.post(
            "/api/v1/submissions", json={"model": REPO, "force": True}, headers=auth
        )
        assert forced.status_code == 201, forced.text
        job = forced.json()["job"]
        assert (job["id"] != first["id"], job["revision"], job["state"]) == (True, sha, "queued")
        bad = client.post(
            "/api/v1/submissions", json={"model": REPO, "force": "maybe"}, headers=auth
        )
        assert bad.status_code == 422


@pytest.fixture
def runner():
    return CliRunner()


def test_submit_force_with_a_real_worker(cli_env, runner, tmp_path):
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=2).path
    assert runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny"]).exit_code == 0
    assert runner.invoke(main, ["worker", "--once"]).exit_code == 0
    before = json.loads(runner.invoke(main, ["lookup", "me/tiny", "--json"]).stdout)

    again = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny"])
    assert again.stdout.startswith("already succeeded: job 1, me/tiny@sha256:")
    assert again.stdout.rstrip().endswith("(--force to analyse it again)")
    forced = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny", "--force"])
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith("queued: job 2, me/tiny@sha256:")
    # Queued, not yet run: the registry still answers with job 1's result.
    assert json.loads(runner.invoke(main, ["lookup", "me/tiny", "--json"]).stdout) == before

    worked = runner.invoke(main, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    jobs = json.loads(runner.invoke(main, ["jobs", "--json"]).stdout)
    assert [(j["id"], j["state"]) for j in jobs] == [(2, "succeeded"), (1, "succeeded")]
    after = json.loads(runner.invoke(main, ["lookup", "me/tiny", "--json"]).stdout)
    coordinates = after["revisions"][0]["super_weights"]
    assert coordinates and all(
        sw["evidence"]["code_version"] == sw["provenance"]["detector_version"] for sw in coordinates
    )
