"""A worker's Hub cache within its budget, across real worker jobs fetching from a Hub served
over HTTP: least recently used models are evicted after jobs, a model that cannot fit is refused
before any byte of it is downloaded, and what a crash leaves is cleared."""

from pathlib import Path

import pytest
from sqlalchemy import select

from registry.jobs import service
from registry.jobs.models import Job, JobState
from workers.fixtures.planted import build_planted_model
from workers.sources.cache_budget import MARKER, TRASH_PREFIX, CacheBudget
from workers.sources.pinning import repo_cache_dir
from workers.worker.loop import Worker, WorkerConfig


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return build_planted_model(
        "llama", tmp_path_factory.mktemp("small") / "llama", num_layers=2
    ).path


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    return build_planted_model(
        "llama", tmp_path_factory.mktemp("large") / "llama", num_layers=8
    ).path


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _run(db_sessions, budget: int) -> dict[str, Job]:
    worker = Worker(
        db_sessions,
        WorkerConfig(once=True, lease_seconds=60, poll_seconds=0.1, cache_budget_bytes=budget),
    )
    worker.run()
    with db_sessions() as session:
        return {job.model_id: job for job in session.scalars(select(Job))}


def test_least_recently_used_models_are_evicted_after_jobs(fake_hub, db_sessions, small):
    repos = ["acme/first", "acme/second", "acme/third"]
    for repo in repos:
        fake_hub.add_repo(repo, small)
    one = _bytes(small)
    budget = int(2.5 * one)  # two models fit, three do not
    for repo in repos:  # one after the other: the first is the least recently used
        service.submit(db_sessions, repo)
        done = _run(db_sessions, budget)
        assert done[repo].state == JobState.SUCCEEDED, done[repo].last_error
        assert CacheBudget(fake_hub.cache, budget).size() <= budget
    cached = sorted(p.name for p in fake_hub.cache.iterdir() if p.name.startswith("models--"))
    assert cached == ["models--acme--second", "models--acme--third"]
    assert CacheBudget(fake_hub.cache, budget).size() > one  # kept what fits
    assert all(fake_hub.total_served(repo) > 0 for repo in repos)


def test_a_model_over_the_budget_is_refused_before_any_byte(fake_hub, db_sessions, small, large):
    fake_hub.add_repo("acme/large", large)
    fake_hub.add_repo("acme/small", small)
    service.submit(db_sessions, "acme/large")
    service.submit(db_sessions, "acme/small")
    budget = int(1.5 * _bytes(small))
    done = _run(db_sessions, budget)
    refused = done["acme/large"]
    assert refused.state == JobState.FAILED
    assert "over this worker's Hub cache budget" in refused.last_error
    assert fake_hub.total_served("acme/large") == 0
    assert done["acme/small"].state == JobState.SUCCEEDED, done["acme/small"].last_error
    assert CacheBudget(fake_hub.cache, budget).size() <= budget


def test_what_a_crash_leaves_is_cleared_and_marks_order_eviction(tmp_path):
    cache = tmp_path / "cache"
    budget = CacheBudget(cache, limit=250)
    for name, age in (("models--a--old", 300), ("models--b--new", 100)):
        blobs = cache / name / "blobs"
        blobs.mkdir(parents=True)
        (blobs / "x").write_bytes(b"w" * 200)
        budget.touch(cache / name)
        marker = cache / name / MARKER
        stamp = marker.stat().st_mtime - age
        import os

        os.utime(marker, (stamp, stamp))
    (cache / "models--b--new" / "blobs" / "y.incomplete").write_bytes(b"p" * 50)
    (cache / f"{TRASH_PREFIX}models--c--gone-1234").mkdir()
    budget.recover()
    assert sorted(p.name for p in cache.iterdir()) == ["models--a--old", "models--b--new"]
    assert budget.size() == 400
    budget.enforce()
    assert [p.name for p in cache.iterdir()] == ["models--b--new"]
    assert budget.size() == 200
    with pytest.raises(Exception, match="over this worker's Hub cache budget"):
        budget.make_room(repo_cache_dir("b/new", cache), 300, "b/new")
