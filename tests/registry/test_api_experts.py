"""The read API serves each coordinate's routed expert and a revision's super experts with their
evidence; the OpenAPI document describes them; a write of a super expert changes the ETag."""

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.database import transaction
from registry.superweights import service
from tests.expert_reports import FUSED_TENSOR, moe_report
from tests.helpers import SHA_A

MODEL = "acme/tiny-moe"


@pytest.fixture
def client(fresh_reads, db_url):
    with TestClient(create_app(db_url)) as client:
        yield client


def _record(sessions, report):
    with transaction(sessions) as session:
        service.record_report(
            session, model_id=MODEL, revision=SHA_A, revision_kind="commit", report=report
        )


def test_lookup_returns_experts_and_super_experts(client, db_sessions):
    _record(db_sessions, moe_report())
    body = client.get(f"/api/v1/models/{MODEL}", params={"revision": SHA_A}).json()
    (revision,) = body["revisions"]
    fused = next(sw for sw in revision["super_weights"] if sw["tensor"] == FUSED_TENSOR)
    assert (fused["index"], fused["expert"], fused["row"], fused["col"]) == ([2, 7, 5], 2, 5, 7)
    first, second = revision["super_experts"]
    assert (first["layer"], first["expert"], first["state"], first["max_abs_output"]) == (
        1,
        2,
        "verified",
        400.0,
    )
    assert first["evidence"]["validation"]["controls"]["random expert 2"]["experts"] == [3]
    assert first["provenance"]["detector_version"] == "0.1.0"
    assert second["max_abs_output"] == "Infinity"
    profile = client.get(f"/api/v1/models/{MODEL}/revisions/{SHA_A}/profile").json()
    assert profile["experts"][2]["experts"][3] == {
        "expert": 3,
        "tokens": 0,
        "max_abs_output": 0.0,
        "output_row": None,
        "output_token": None,
        "prompt": None,
    }


def test_openapi_documents_experts(client):
    spec = client.get("/api/v1/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "expert" in schemas["SuperWeightOut"]["properties"]
    assert "super_experts" in schemas["RevisionOut"]["properties"]
    assert {
        "layer",
        "expert",
        "module",
        "state",
        "max_abs_output",
        "evidence",
        "provenance",
    } <= set(schemas["SuperExpertOut"]["properties"])
    assert "experts" in schemas["ProfileOut"]["properties"]


def test_a_super_expert_write_changes_the_strong_etag(client, db_sessions):
    report = moe_report()
    _record(db_sessions, report)
    url = f"/api/v1/models/{MODEL}"
    first = client.get(url)
    etag = first.headers["etag"]
    assert not etag.startswith("W/")
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    report["super_experts"][1]["state"] = "verified"
    _record(db_sessions, report)
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["revisions"][0]["super_experts"][1]["state"] == "verified"
    assert client.get(url, headers={"If-None-Match": changed.headers["etag"]}).status_code == 304
