"""Fixtures for the queue, worker and Hub tests: an offline Hub cache per test, a small valid
detection report, and a helper that runs `swreg`-equivalent entry points in subprocesses."""

import os
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from registry.jobs.models import JobSource
from registry.jobs.queue import enqueue, write_transaction

REPO_ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"

# The smallest report record_report accepts: what `swreg detect --json` prints.
REPORT = {
    "model": {
        "path": "/models/tiny",
        "model_type": "llama",
        "architecture": "LlamaForCausalLM",
        "dtype": "float32",
        "num_layers": 2,
        "weight_files": [{"name": "model.safetensors", "sha256": "d" * 64, "size": 1000}],
    },
    "detector": {"name": "swreg", "version": "0.1.0"},
    "super_weights": [
        {
            "tensor": "model.layers.1.mlp.down_proj.weight",
            "index": [3, 7],
            "layer": 1,
            "module": "mlp.down_proj",
            "row": 3,
            "col": 7,
            "value": 5.0,
            "dtype": "float32",
            "state": "verified",
            "evidence": {"ppl_base": 10.0, "ppl_ablated": 400.0},
        }
    ],
    "timings": {"total": 0.1},
}


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline (there is no Hub to reach here), for this process
    (huggingface_hub reads its constants at call time) and for subprocesses (environment)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def add_jobs(
    db_sessions,
    count: int,
    *,
    prefix: str = "org/model",
    revision: str = SHA,
    source=JobSource.HUB,
    max_attempts: int = 3,
    local_path: str | None = None,
):
    ids = []
    for i in range(count):
        with write_transaction(db_sessions) as session:
            job, created = enqueue(
                session,
                model_id=f"{prefix}-{i}",
                revision=revision,
                source=source,
                local_path=local_path,
                max_attempts=max_attempts,
            )
            assert created
            ids.append(job.id)
    return ids


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that imports this source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


WORKER_CMD = [sys.executable, "-m", "workers.worker"]
