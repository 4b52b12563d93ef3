"""API tokens and the jobs API: writes need a live token (401 JSON otherwise), reads are open,
a revision is pinned at submission and submitted once."""

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.auth import service as auth
from registry.cli import main
from registry.database import transaction
from registry.errors import Conflict
from tests.workers.test_hub import REPO, make_checkpoint
from workers.reference_models import install_into_hf_cache


@pytest.fixture
def client(db_url, hf_cache):
    with TestClient(create_app(db_url)) as c:
        yield c


@pytest.fixture
def token(db_sessions) -> str:
    with transaction(db_sessions) as session:
        _, secret = auth.create_token(session, "ci")
    return secret


def test_tokens_are_stored_hashed_and_can_be_revoked(db_sessions):
    with transaction(db_sessions) as session:
        row, secret = auth.create_token(session, "alice")
        assert secret.startswith("swreg_") and len(secret) > 40
        assert row.token_hash == auth.hash_token(secret) and secret not in row.token_hash
        with pytest.raises(Conflict):
            auth.create_token(session, "alice")
    with transaction(db_sessions) as session:
        assert auth.authenticate(session, secret).name == "alice"
        auth.revoke_token(session, "alice")
    with transaction(db_sessions) as session, pytest.raises(auth.Unauthorized):
        auth.authenticate(session, secret)
    with transaction(db_sessions) as session:  # the name is free again
        auth.create_token(session, "alice")
        assert [t.name for t in auth.list_tokens(session)] == ["alice", "alice"]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_writes_without_a_valid_token_get_401_json(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/v1/submissions", json={"model": REPO}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_submit_pins_the_revision_and_never_duplicates(client, token, tmp_path, hf_cache):
    sha = install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    auth_header = {"Authorization": f"Bearer {token}"}
    first = client.post(
        "/api/v1/submissions", json={"model": REPO, "revision": "main"}, headers=auth_header
    )
    assert first.status_code == 201, first.text
    job = first.json()["job"]
    assert first.json()["created"] is True
    assert (job["model_id"], job["revision"], job["requested_revision"]) == (REPO, sha, "main")
    assert (job["state"], job["attempts"], job["source"]) == ("queued", 0, "hub")

    again = client.post(
        "/api/v1/submissions", json={"model": REPO, "revision": sha[:8]}, headers=auth_header
    )
    assert again.status_code == 200
    assert again.json() == {"created": False, "job": job}

    read = client.get(f"/api/v1/jobs/{job['id']}")  # reads need no token
    assert read.status_code == 200 and read.json() == job
    assert [
        j["id"] for j in client.get("/api/v1/jobs", params={"state": "queued"}).json()["items"]
    ] == [job["id"]]
    assert client.get("/api/v1/jobs/999").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "acme/unknown"}, 422, "not in the local Hub cache"),
        ({"model": REPO, "revision": "nope"}, 422, "cannot be resolved"),
        ({"model": "/etc"}, 422, "invalid"),  # local paths are for the CLI only
    ],
)
def test_unresolvable_submissions_are_refused_and_queue_nothing(
    client, token, tmp_path, hf_cache, body, status, message
):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    response = client.post(
        "/api/v1/submissions", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert client.get("/api/v1/jobs").json()["items"] == []


def test_token_cli(cli_env):
    runner = CliRunner()
    created = runner.invoke(main, ["token", "create", "bot"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("swreg_")
    listed = runner.invoke(main, ["token", "list"])
    assert "bot" in listed.output and secret not in listed.output and "never used" in listed.output
    assert runner.invoke(main, ["token", "revoke", "bot"]).exit_code == 0
    assert "REVOKED" in runner.invoke(main, ["token", "list"]).output
    missing = runner.invoke(main, ["token", "revoke", "bot"])
    assert missing.exit_code != 0 and "no live token named 'bot'" in missing.output
