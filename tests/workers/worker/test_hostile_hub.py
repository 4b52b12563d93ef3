"""A hostile or broken Hub against a real worker, over real HTTP (tests/fake_hub.py): a Hub that
stalls mid-file or never answers costs a fetch its stall timeout and hands the job back (an
outage, not the job's fault); a Hub repository with a config bomb, an oversized shard index or a
shard index naming files outside its snapshot is refused at once, for good, in one line, and the
refusal reads the same whatever lies outside."""

import json
import shutil
import time
from pathlib import Path

import pytest

from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.jobs.schemas import JobOut
from workers.science.checkpoint import OUTSIDE_THE_CHECKPOINT
from workers.science.limits import Limits
from workers.sources import hub_client
from workers.worker import isolation
from workers.worker.loop import Worker, WorkerConfig

NAME = "hub-worker"
STALL_SECONDS = 1.0
# A stalled fetch ends within the stall timeout, plus huggingface_hub's own work around it.
STALLED_FETCH_BOUND_SECONDS = 10 * STALL_SECONDS


@pytest.fixture
def planted(planted_models) -> Path:
    return planted_models("llama").path


@pytest.fixture(autouse=True)
def default_hub_bounds():
    yield
    hub_client.configure(hub_client.HubTimeouts())


def _worker(sessions, **config) -> Worker:
    return Worker(
        sessions,
        WorkerConfig(
            once=True, validate=False, lease_seconds=120, hub_read_seconds=STALL_SECONDS, **config
        ),
        name=NAME,
    )


def _job(sessions, job_id: int) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def _variant(planted: Path, where: Path, *, config: dict | None = None, index: dict | None = None):
    shutil.copytree(planted, where)
    if config:
        document = json.loads((where / "config.json").read_text())
        document.update(config)
        (where / "config.json").write_text(json.dumps(document))
    if index is not None:
        (where / "model.safetensors.index.json").write_text(json.dumps(index))
    return where


def test_a_fetch_that_stalls_mid_file_hands_the_job_back_within_the_stall_timeout(
    fake_hub, planted, sessions
):
    fake_hub.add_repo("acme/stalling", planted)
    job_id = service.submit(sessions, "acme/stalling").job.id
    fake_hub.stall_after, fake_hub.stall_seconds = 100, 30  # 100 bytes, then nothing for 30 s
    worker = _worker(sessions)
    isolation.warm_up()  # the forkserver's start is the worker's, not the fetch's
    started = time.monotonic()
    assert worker.run() == 1
    elapsed = time.monotonic() - started
    job = _job(sessions, job_id)
    # An outage: back to the queue for later, no attempt used up.
    assert (job.state, job.attempts) == (JobState.QUEUED, 0), job.last_error
    assert job.last_error.startswith("waiting to retry: ")
    assert f"the Hub sent nothing for {STALL_SECONDS:g} s" in job.last_error
    assert elapsed < STALLED_FETCH_BOUND_SECONDS, elapsed
    print(f"stalled fetch handed back after {elapsed:.1f} s: {job.last_error}")


def test_a_slow_hub_that_pauses_less_than_the_stall_timeout_is_not_cut_off(
    fake_hub, planted, sessions
):
    fake_hub.add_repo("acme/slow", planted)
    job_id = service.submit(sessions, "acme/slow").job.id
    fake_hub.stall_after, fake_hub.stall_seconds = 100, STALL_SECONDS / 2
    assert _worker(sessions).run() == 1
    job = _job(sessions, job_id)
    assert job.state == JobState.SUCCEEDED, job.last_error


def test_a_hub_that_never_answers_hands_the_job_back(fake_hub, planted, sessions):
    fake_hub.add_repo("acme/hung", planted)
    job_id = service.submit(sessions, "acme/hung").job.id
    fake_hub.hang()
    isolation.warm_up()
    started = time.monotonic()
    assert _worker(sessions).run() == 1
    job = _job(sessions, job_id)
    assert (job.state, job.attempts) == (JobState.QUEUED, 0), job.last_error
    assert time.monotonic() - started < STALLED_FETCH_BOUND_SECONDS


def test_hostile_hub_repositories_are_refused_for_good_in_one_line(
    fake_hub, planted, sessions, tmp_path
):
    padded_index = {"metadata": {"pad": "x" * 4096}, "weight_map": {}}
    repos = {
        "acme/layer-bomb": (
            _variant(planted, tmp_path / "bomb", config={"num_hidden_layers": 10**9}),
            "config.json gives num_hidden_layers = 1000000000; it must be an integer from 1",
        ),
        "acme/huge-index": (
            _variant(planted, tmp_path / "index", index=padded_index),
            "model.safetensors.index.json (shard index) is",
        ),
    }
    for repo, (folder, _) in repos.items():
        fake_hub.add_repo(repo, folder)
    jobs = {repo: service.submit(sessions, repo).job.id for repo in repos}
    worker = _worker(sessions, caps=Limits(shard_index_bytes=1024))
    assert worker.run() == len(repos)
    for repo, (_, expected) in repos.items():
        job = _job(sessions, jobs[repo])
        assert (job.state, job.attempts) == (JobState.FAILED, 1), (repo, job.last_error)
        assert expected in job.last_error and "\n" not in job.last_error, job.last_error
    # The oversized index was judged from the listing: not one byte of it was downloaded.
    assert "model.safetensors.index.json" not in fake_hub.downloads("acme/huge-index")


def test_a_shard_index_naming_files_outside_reads_the_same_whatever_lies_there(
    fake_hub, planted, sessions, tmp_path
):
    """The former existence oracle: /etc/shadow exists, /etc/no-such-file does not, `../` leaves
    the snapshot; a FIFO outside would hang whoever opened it. One answer for all, at once."""
    import os

    fifo = tmp_path / "outside.safetensors"
    os.mkfifo(fifo)
    names = {
        "acme/shadow": "/etc/shadow",
        "acme/missing": "/etc/no-such-file",
        "acme/parent": "../../blobs/x.safetensors",
        "acme/fifo": str(fifo),
    }
    for repo, outside in names.items():
        index = {"weight_map": {"model.embed_tokens.weight": outside}}
        fake_hub.add_repo(repo, _variant(planted, tmp_path / repo.split("/")[1], index=index))
    jobs = {repo: service.submit(sessions, repo).job.id for repo in names}
    started = time.monotonic()
    assert _worker(sessions).run() == len(names)
    assert time.monotonic() - started < 60
    public = set()
    for repo in names:
        job = _job(sessions, jobs[repo])
        assert (job.state, job.attempts) == (JobState.FAILED, 1), job.last_error
        assert job.last_error.endswith(OUTSIDE_THE_CHECKPOINT), job.last_error
        # What a reader without a token sees: no local path, and one message for all.
        public.add(JobOut.of(job, public=True).last_error)
    assert len(public) == 1, public
    print(f"outside the checkpoint, whatever lies there: {public.pop()}")
