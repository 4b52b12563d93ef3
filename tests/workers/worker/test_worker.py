"""The worker on tiny planted models, through the offline Hub cache and through a Hub served
over HTTP: refused checkpoints end `failed` with their reason, before any byte of them is
downloaded, and the worker goes on; a good one ends `succeeded` with its super weights in the
registry. (Stop signals: test_signals.py; heartbeats and leases: test_leases.py.)"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.service import lookup
from tests.helpers import WORKER_CMD, python_env
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.fixtures.planted import build_planted_model
from workers.worker.loop import Worker, WorkerConfig

# Between a 2-layer tiny model (~0.6 MB) and an 8-layer one (~2.1 MB).
SIZE_CAP_BYTES = 1_600_000
WORKER_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def planted_large(tmp_path_factory) -> Path:
    return build_planted_model(
        "llama", tmp_path_factory.mktemp("large") / "llama", num_layers=8
    ).path


def _variant(
    source: Path,
    target: Path,
    *,
    config: dict | None = None,
    truncate: bool = False,
    pickle_only: bool = False,
) -> Path:
    shutil.copytree(source, target)
    if config is not None:
        current = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**current, **config}))
    weights = target / "model.safetensors"
    if truncate:
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    if pickle_only:
        weights.unlink()
        (target / "pytorch_model.bin").write_bytes(b"\x80\x04\x95 a pickle, never opened")
    return target


def test_refused_checkpoints_fail_with_their_reason_and_the_worker_goes_on(
    db_sessions, hf_cache, tmp_path, planted_two_layers, planted_large
):
    repos = {
        "acme/pickle-only": _variant(planted_two_layers, tmp_path / "pickle", pickle_only=True),
        "acme/remote-code": _variant(
            planted_two_layers,
            tmp_path / "remote",
            config={"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}},
        ),
        "acme/unknown-arch": _variant(
            planted_two_layers, tmp_path / "arch", config={"model_type": "frobnicator"}
        ),
        "acme/corrupt": _variant(planted_two_layers, tmp_path / "corrupt", truncate=True),
        "acme/too-big": planted_large,
        "acme/good": planted_two_layers,
    }
    jobs = {}
    for repo, directory in repos.items():
        install_into_hf_cache(directory, hf_cache, repo)
        jobs[repo] = service.submit(db_sessions, repo).job.id

    worker = Worker(
        db_sessions,
        WorkerConfig(
            once=True, lease_seconds=60, max_checkpoint_bytes=SIZE_CAP_BYTES, poll_seconds=0.1
        ),
    )
    assert worker.run() == len(repos)

    with db_sessions() as session:
        done = {j.model_id: j for j in session.scalars(select(Job))}
    expected_errors = {
        "acme/pickle-only": "pickle-only checkpoint (never unpickled)",
        "acme/remote-code": "remote code",
        "acme/unknown-arch": "frobnicator",
        "acme/corrupt": "corrupt safetensors",
        "acme/too-big": "over the cap of 0.0016 GB",
    }
    for repo, fragment in expected_errors.items():
        job = done[repo]
        assert (job.state, job.attempts) == (JobState.FAILED, 1), (repo, job.last_error)
        assert fragment in job.last_error and "\n" not in job.last_error, (repo, job.last_error)
    good = done["acme/good"]
    assert good.state == JobState.SUCCEEDED and good.last_error is None
    assert {"fetch", "detect", "analyse", "total"} <= set(good.timings)
    with db_sessions() as session:
        (revision,) = lookup(session, "acme/good", good.revision)
        assert revision.id == good.result_revision_id
        verified = {
            (sw.tensor, tuple(sw.index)) for sw in revision.super_weights if sw.state == "verified"
        }
    assert ("model.layers.1.mlp.down_proj.weight", (49, 20)) in verified


def test_a_local_directory_is_worked_from_its_path(db_sessions, planted_two_layers):
    submission = service.submit(db_sessions, str(planted_two_layers), model_id="local/planted")
    assert submission.job.revision.startswith("sha256:")
    Worker(db_sessions, WorkerConfig(once=True, lease_seconds=60)).run()
    with db_sessions() as session:
        job = session.get(Job, submission.job.id)
        assert job.state == JobState.SUCCEEDED, job.last_error
        assert job.fetch["files"] and job.fetch["downloaded_bytes"] == 0


def test_a_worker_process_downloads_from_the_hub_only_what_it_reads(
    fake_hub, tmp_path, planted_two_layers, planted_large, sessions, sqlite_url
):
    """A real `python -m workers.worker` with HF_ENDPOINT pointing at a Hub served over HTTP."""
    duplicates = {"pytorch_model.bin": b"p" * 300_000, "model.Q4_0.gguf": b"g" * 200_000}
    fake_hub.add_repo("acme/good", planted_two_layers, extra_files=duplicates)
    fake_hub.add_repo("acme/too-big", planted_large)
    fake_hub.add_repo(
        "acme/pickle-only", _variant(planted_two_layers, tmp_path / "pickle", pickle_only=True)
    )
    # Submission pins each revision by asking the same Hub.
    jobs = {repo: service.submit(sessions, repo).job.id for repo in sorted(fake_hub.repos)}

    env = python_env(SWREG_DATABASE_URL=sqlite_url, SWREG_MAX_CHECKPOINT_BYTES=str(SIZE_CAP_BYTES))
    run = subprocess.run(
        [*WORKER_CMD, "--once"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with sessions() as session:
        done = {job.model_id: job for job in session.scalars(select(Job))}

    for repo, reason in (("acme/pickle-only", "pickle-only"), ("acme/too-big", "over the cap")):
        assert done[repo].state == JobState.FAILED and reason in done[repo].last_error
        # Refused from the listing: not one byte of the repository was downloaded.
        assert fake_hub.downloads(repo) == [], fake_hub.downloads(repo)
        assert fake_hub.total_served(repo) == 0
    good = done["acme/good"]
    assert good.id == jobs["acme/good"]
    assert good.state == JobState.SUCCEEDED, good.last_error
    fetched = sorted(f["name"] for f in good.fetch["files"])
    assert sorted(fake_hub.downloads("acme/good")) == fetched
    assert not set(duplicates) & set(fetched)
    # The job's record of what it downloaded is what the Hub sent it.
    assert good.fetch["downloaded_bytes"] == fake_hub.total_served("acme/good") > 0
    not_fetched = good.fetch["repo_bytes"] - good.fetch["selected_bytes"]
    assert not_fetched == sum(map(len, duplicates.values()))
