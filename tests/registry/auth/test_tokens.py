"""API tokens: stored hashed, revocable, and required on writes (401 JSON otherwise)."""

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.auth import service as auth
from registry.cli import main
from registry.database import transaction
from registry.errors import Conflict
from tests.helpers import REPO


@pytest.fixture
def client(db_url, hf_cache):
    with TestClient(create_app(db_url)) as c:
        yield c


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
