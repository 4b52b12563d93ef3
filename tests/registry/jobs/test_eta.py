"""A running job's time left, from measured rates: the shown stage's own pace, the later stages'
median on recent successful jobs, and never less than what the usual job still takes."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from registry.app import create_app
from registry.jobs import queue
from registry.jobs.eta import estimate
from registry.jobs.models import Job, JobSource, JobState
from tests.helpers import SHA

NOW = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
RECENT = {"fetch": 1.0, "load": 2.0, "detect": 11.0, "validate": 35.0, "score": 16.0, "total": 66.0}


def _running(stage: str, done: int, total: int, timings: dict, ran: float) -> Job:
    return Job(
        state=JobState.RUNNING,
        stage=stage,
        progress_done=done,
        progress_total=total,
        timings=timings,
        started_at=NOW - timedelta(seconds=ran),
    )


def test_the_rest_of_the_stage_at_its_pace_and_the_later_stages_as_they_usually_take():
    job = _running("validate", 10, 30, {"fetch": 1, "load": 2, "validate": 20.0}, ran=23)
    found = estimate(job, RECENT, NOW, 5)
    # 20 more layers at 2 s a layer, then scoring's usual 16 s; more than 66 - 23 = 43.
    assert (found.seconds, found.scope) == (56.0, "job")
    assert "last 5 successful jobs" in found.basis


def test_a_done_stage_still_running_falls_back_on_the_usual_length():
    """Scoring shows 2/2 while a second validation pass runs: the pace says 0 s, the recent
    jobs' median total says how much a job like it usually still has."""
    job = _running("score", 2, 2, {"score": 14.0}, ran=56)
    assert estimate(job, RECENT, NOW, 5).seconds == 10.0


def test_without_history_only_the_stage_is_estimated_and_it_says_so():
    job = _running("detect", 3, 30, {"detect": 3.0}, ran=8)
    found = estimate(job, {}, NOW, 0)
    assert (found.seconds, found.scope, found.basis) == (27.0, "stage", "the pace of detect so far")
    assert estimate(_running("detect", 0, 30, {}, ran=1), {}, NOW, 0) is None
    assert estimate(Job(state=JobState.QUEUED), RECENT, NOW, 5) is None


def test_the_api_gives_a_running_job_its_eta(db_url, db_sessions):
    with queue.write_transaction(db_sessions) as session:
        done, _ = queue.enqueue(
            session, model_id="org/done", revision=SHA, source=JobSource.HUB, max_attempts=3
        )
        done.state, done.timings, done.finished_at = JobState.SUCCEEDED, RECENT, NOW
        job, _ = queue.enqueue(
            session, model_id="org/m", revision=SHA, source=JobSource.HUB, max_attempts=3
        )
    with queue.write_transaction(db_sessions) as session:
        _, lease = queue.claim(session, owner="w", lease_seconds=600)
    with queue.write_transaction(db_sessions) as session:
        queue.report_progress(
            session, lease, stage="validate", done=10, total=30, timings={"validate": 20.0}
        )
    with TestClient(create_app(db_url)) as client:
        answer = client.get(f"/api/v1/jobs/{job.id}").json()
        assert answer["eta"]["scope"] == "job" and answer["eta"]["seconds"] >= 56.0
        assert "last 1 successful job" in answer["eta"]["basis"]
        assert client.get(f"/api/v1/jobs/{done.id}").json()["eta"] is None
        page = client.get(f"/jobs/{job.id}").text
    assert 'data-field="eta">about ' in page


def test_a_running_job_s_stage_times_do_not_scale_the_recent_jobs():
    """A running job's timings are wall time between its progress reports (detection's spans
    the validation beside it: 22 s here), a finished job's the analysis's own (11 s): no speed
    is read from them, and the usual length stands."""
    job = _running("score", 1, 4, {"fetch": 1, "load": 2, "detect": 22.0, "score": 4.0}, ran=60)
    assert estimate(job, RECENT, NOW, 5).seconds == 12.0  # 3 more chunks at 4 s; 66 - 60 = 6
