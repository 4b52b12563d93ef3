"""The submissions API: a revision is pinned at submission and submitted once; what cannot be
pinned is refused and queues nothing."""

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from tests.helpers import REPO, make_checkpoint
from workers.fixtures.hf_cache import install_into_hf_cache


@pytest.fixture
def client(db_url, hf_cache):
    with TestClient(create_app(db_url)) as c:
        yield c


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
