"""Fair queues and quotas: submitters take turns at the claim, operators' priorities go first,
and a token past its limits gets 429 with Retry-After (admin tokens exempt), over real HTTP and
on both databases, with submissions from concurrent tokens."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from registry.app import create_app
from registry.auth import service as auth
from registry.database import transaction
from registry.jobs import queue
from registry.jobs.queue import write_transaction
from registry.jobs.states import JobSource
from registry.settings import get_settings
from tests.helpers import SHA, LiveServer, make_checkpoint
from workers.fixtures.hf_cache import install_into_hf_cache


def _enqueue(db_sessions, model_id, submitted_by, priority=0) -> int:
    with write_transaction(db_sessions) as session:
        job, created = queue.enqueue(
            session,
            model_id=model_id,
            revision=SHA,
            source=JobSource.HUB,
            max_attempts=3,
            submitted_by=submitted_by,
            priority=priority,
        )
        assert created
        return job.id


def _claim_all(db_sessions, most: int | None = None) -> list[str]:
    claimed = []
    while most is None or len(claimed) < most:
        with write_transaction(db_sessions) as session:
            got = queue.claim(session, owner="w", lease_seconds=60)
            if got is None:
                return claimed
            claimed.append(got[0].model_id)
    return claimed


def test_claims_interleave_submitters_instead_of_first_in_first_out(db_sessions):
    for i in range(6):
        _enqueue(db_sessions, f"flood/m{i}", "token:flood")
    _enqueue(db_sessions, "polite/a", "token:polite")
    _enqueue(db_sessions, "polite/b", "token:polite")
    _enqueue(db_sessions, "cli/x", "cli")
    assert _claim_all(db_sessions) == [
        "flood/m0",
        "polite/a",
        "cli/x",
        "flood/m1",
        "polite/b",
        "flood/m2",
        "flood/m3",
        "flood/m4",
        "flood/m5",
    ]


def test_a_newcomer_waits_for_one_job_of_each_other_submitter_at_most(db_sessions):
    for i in range(5):
        _enqueue(db_sessions, f"flood/m{i}", "token:flood")
    assert _claim_all(db_sessions, 2) == ["flood/m0", "flood/m1"]
    for i in range(5, 9):
        _enqueue(db_sessions, f"flood/m{i}", "token:flood")
    _enqueue(db_sessions, "late/a", "token:late")
    assert _claim_all(db_sessions)[:2] == ["flood/m2", "late/a"]


def test_an_operators_priority_goes_first(db_sessions):
    for i in range(3):
        _enqueue(db_sessions, f"flood/m{i}", "token:flood")
    _enqueue(db_sessions, "ops/urgent", "cli", priority=10)
    _enqueue(db_sessions, "ops/later", "cli", priority=-1)
    order = _claim_all(db_sessions)
    assert order[0] == "ops/urgent" and order[-1] == "ops/later"


@pytest.fixture
def quotas(monkeypatch):
    monkeypatch.setenv("SWREG_QUOTA_QUEUED_JOBS", "3")
    monkeypatch.setenv("SWREG_QUOTA_SUBMISSIONS_PER_MINUTE", "4")
    monkeypatch.setenv("SWREG_QUOTA_RETRY_AFTER_SECONDS", "30")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def repos(tmp_path, hf_cache) -> list[str]:
    names = [f"acme/tiny-{i}" for i in range(12)]
    for name in names:
        install_into_hf_cache(make_checkpoint(tmp_path / name), hf_cache, name)
    return names


def _tokens(db_sessions, *names, admin=False) -> dict[str, str]:
    with transaction(db_sessions) as session:
        return {name: auth.create_token(session, name, admin=admin)[1] for name in names}


def _submit(url, secret, model, **extra) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/submissions",
        json={"model": model, **extra},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_queued_jobs_per_token_are_limited_with_429_and_retry_after(
    quotas, db_url, db_sessions, repos
):
    tokens = _tokens(db_sessions, "a", "b")
    admin = _tokens(db_sessions, "ops", admin=True)["ops"]
    with LiveServer(create_app(db_url)) as live:
        # Two tokens at once, four submissions each: each gets exactly its three places.
        first = repos[:8]
        with ThreadPoolExecutor(8) as pool:
            answers = {
                name: list(pool.map(lambda m, s=secret: _submit(live.url, s, m), first[i::2]))
                for i, (name, secret) in enumerate(tokens.items())
            }
        for name, responses in answers.items():
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [201, 201, 201, 429], (name, statuses)
            (refused,) = [r for r in responses if r.status_code == 429]
            assert refused.headers["retry-after"] == "30"
            assert refused.json()["error"] == {
                "code": "quota_exceeded",
                "message": f"token:{name} has 3 jobs queued or running (limit 3): submit more "
                "when some have finished",
            }
        # A job the token already has is answered whatever its quota.
        done = next(r for r in answers["a"] if r.status_code == 201).json()["job"]
        again = _submit(live.url, tokens["a"], done["model_id"])
        assert again.status_code == 200 and again.json()["job"]["id"] == done["id"]
        # Admin tokens are exempt, and only they may set a priority.
        assert _submit(live.url, tokens["a"], repos[8], priority=5).status_code == 403
        urgent = _submit(live.url, admin, repos[8], priority=5)
        assert urgent.status_code == 201 and urgent.json()["job"]["priority"] == 5
        # Beyond three jobs queued: the admin token is exempt.
        assert [_submit(live.url, admin, m).status_code for m in repos[9:]] == [201] * 3


def test_submissions_per_minute_are_limited(quotas, db_url, db_sessions, repos, monkeypatch):
    monkeypatch.setenv("SWREG_QUOTA_QUEUED_JOBS", "100")
    get_settings.cache_clear()
    secret = _tokens(db_sessions, "fast")["fast"]
    with LiveServer(create_app(db_url)) as live:
        statuses = [_submit(live.url, secret, m).status_code for m in repos[:5]]
        assert statuses == [201, 201, 201, 201, 429]
        refused = _submit(live.url, secret, repos[5])
        retry_after = int(refused.headers["retry-after"])
        assert refused.status_code == 429 and 1 <= retry_after <= 60
        assert "submitted 4 jobs in the last minute (limit 4)" in refused.json()["error"]["message"]
