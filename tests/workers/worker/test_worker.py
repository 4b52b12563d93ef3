"""The worker on tiny planted models, through the offline Hub cache: refused checkpoints end
`failed` with their reason and the worker goes on; a good one ends `succeeded` with its super
weights in the registry. (Stop signals: test_signals.py; heartbeats and leases: test_leases.py.)"""

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.service import lookup
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.fixtures.planted import build_planted_model
from workers.worker.loop import Worker, WorkerConfig

# Between a 2-layer tiny model (~0.6 MB) and an 8-layer one (~2.1 MB).
SIZE_CAP_BYTES = 1_600_000


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return build_planted_model(
        "llama", tmp_path_factory.mktemp("planted") / "llama", num_layers=2
    ).path


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
    db_sessions, hf_cache, tmp_path, planted, planted_large
):
    repos = {
        "acme/pickle-only": _variant(planted, tmp_path / "pickle", pickle_only=True),
        "acme/remote-code": _variant(
            planted,
            tmp_path / "remote",
            config={"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}},
        ),
        "acme/unknown-arch": _variant(
            planted, tmp_path / "arch", config={"model_type": "frobnicator"}
        ),
        "acme/corrupt": _variant(planted, tmp_path / "corrupt", truncate=True),
        "acme/too-big": planted_large,
        "acme/good": planted,
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


def test_a_local_directory_is_worked_from_its_path(db_sessions, planted):
    submission = service.submit(db_sessions, str(planted), model_id="local/planted")
    assert submission.job.revision.startswith("sha256:")
    Worker(db_sessions, WorkerConfig(once=True, lease_seconds=60)).run()
    with db_sessions() as session:
        job = session.get(Job, submission.job.id)
        assert job.state == JobState.SUCCEEDED, job.last_error
        assert job.fetch["files"] and job.fetch["downloaded_bytes"] == 0
