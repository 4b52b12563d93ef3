"""The whole path on a real model, offline: SmolLM2-135M-Instruct in a Hugging Face cache under a
repo id, submitted over HTTP to a real server with a token, processed by a real worker process,
then read back from the API: layer 11's down_proj [507, 1229] is a verified super weight."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from registry import migrate
from registry.auth import service as auth
from registry.database import make_engine, make_sessionmaker, transaction
from tests.helpers import WORKER_CMD, python_env
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.fixtures.smollm2 import smollm2_dir

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
SUPER_WEIGHT = ("model.layers.11.mlp.down_proj.weight", [507, 1229])
SERVER_START_TIMEOUT_S = 60
WORKER_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited: {process.stdout.read() if process.stdout else ''}"
            )
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not start")


@pytest.mark.slow
def test_submit_over_http_work_and_look_up_smollm2(tmp_path: Path, hf_cache: Path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as session:
        _, token = auth.create_token(session, "e2e")
    engine.dispose()
    sha = install_into_hf_cache(smollm2_dir(), hf_cache, REPO)

    env = python_env(SWREG_DATABASE_URL=url, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hf_cache))
    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from registry.cli import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_server(base, server)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{base}/submissions", json={"model": REPO}).status_code == 401
        submitted = httpx.post(f"{base}/submissions", json={"model": REPO}, headers=headers)
        assert submitted.status_code == 201, submitted.text
        job = submitted.json()["job"]
        assert job["revision"] == sha and job["state"] == "queued"

        worker = subprocess.run(
            [*WORKER_CMD, "--once", "--poll-seconds", "0.2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
        )
        assert worker.returncode == 0, worker.stderr
        assert f"job {job['id']}: succeeded" in worker.stderr

        done = httpx.get(f"{base}/jobs/{job['id']}").json()
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 1 and done["last_error"] is None
        for step in ("fetch", "detect", "validate", "total"):
            assert done["timings"][step] >= 0
        assert done["fetch"]["downloaded_bytes"] == 0  # all from the cache, offline
        assert done["fetch"]["repo_bytes"] >= done["fetch"]["selected_bytes"] > 500_000_000
        print("SmolLM2 job timings:", done["timings"])

        found = httpx.get(f"{base}/models/{REPO}", params={"revision": sha})
        assert found.status_code == 200, found.text
        (revision,) = found.json()["revisions"]
        coordinates = {(sw["tensor"], tuple(sw["index"])): sw for sw in revision["super_weights"]}
        tensor, index = SUPER_WEIGHT
        assert coordinates[(tensor, tuple(index))]["state"] == "verified"

        # The same revision again (by branch name this time): its job, not a second one.
        again = httpx.post(
            f"{base}/submissions", json={"model": REPO, "revision": "main"}, headers=headers
        )
        assert again.status_code == 200
        assert again.json()["created"] is False and again.json()["job"]["id"] == job["id"]
        assert [j["id"] for j in httpx.get(f"{base}/jobs").json()["items"]] == [job["id"]]
    finally:
        server.terminate()
        server.wait(timeout=30)
