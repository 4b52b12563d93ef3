"""The read API over FastAPI's test client (in-process ASGI) on real databases."""

from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient

from registry import migrate
from registry.app import create_app
from registry.database import transaction
from registry.index import service as index_service
from registry.superweights import service
from registry.superweights.documents import parse_time
from tests.helpers import SHA_A

CITATION = (
    "Yu, Wang, Shan, Reed, Wan. The Super Weight in Large Language Models. arXiv:2411.07191 (2024)"
)


@pytest.fixture
def client(db_url, published):
    with TestClient(create_app(db_url)) as client:
        yield client


def test_health_is_liveness_and_ready_checks_the_database(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and "schema_revision" not in response.json()
    response = client.get("/api/v1/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["schema_revision"] == list(migrate.head_revisions())


def test_lookup_returns_the_published_coordinate_with_its_citation(client):
    response = client.get("/api/v1/models/huggyllama/llama-7b")
    assert response.status_code == 200
    body = response.json()
    assert body["model_id"] == "huggyllama/llama-7b"
    (revision,) = body["revisions"]
    assert revision["revision"] == "unknown"
    (sw,) = revision["super_weights"]
    assert sw["tensor"] == "model.layers.2.mlp.down_proj.weight"
    assert sw["index"] == [3968, 7003]
    assert (sw["layer"], sw["row"], sw["col"], sw["module"]) == (2, 3968, 7003, "mlp.down_proj")
    assert sw["state"] == "published"
    assert sw["value"] is None
    assert sw["provenance"]["citation"] == CITATION


def test_lookup_by_revision(client, db_sessions, report):
    with transaction(db_sessions) as session:
        service.record_report(
            session,
            model_id="huggyllama/llama-7b",
            revision=SHA_A,
            revision_kind="commit",
            report=report,
        )
    both = client.get("/api/v1/models/huggyllama/llama-7b").json()
    assert [r["revision"] for r in both["revisions"]] == [SHA_A, "unknown"]
    one = client.get("/api/v1/models/huggyllama/llama-7b", params={"revision": SHA_A}).json()
    assert [r["revision"] for r in one["revisions"]] == [SHA_A]
    assert (
        one["revisions"][0]["super_weights"][0]["evidence"]["validation"]["ablated"]["perplexity"]
        == 378.6
    )
    assert one["revisions"][0]["weight_files"][0]["sha256"] == "d" * 64


def test_unknown_model_is_a_json_404(client):
    response = client.get("/api/v1/models/nobody/nothing")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "model not in the registry: nobody/nothing"}
    }
    response = client.get("/api/v1/models/huggyllama/llama-7b", params={"revision": "b" * 40})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/no/such/route").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("revision", ["main", "ABC", "a" * 39, "sha256:xyz", "unknown2"])
def test_malformed_revision_is_422(client, revision):
    response = client.get("/api/v1/models/huggyllama/llama-7b", params={"revision": revision})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "revision" in error["message"]


def test_pagination(client):
    first = client.get("/api/v1/models", params={"limit": 4}).json()
    assert (first["total"], first["limit"], first["offset"], len(first["items"])) == (13, 4, 0, 4)
    assert first["items"][0] == {
        "model_id": "allenai/OLMo-1B-0724-hf",
        "revisions": ["unknown"],
        "super_weights": 3,
        "states": {"published": 3},
    }
    assert first["items"][2]["states"] == {"reported": 1}  # google/gemma-7b
    pages = [
        client.get("/api/v1/models", params={"limit": 4, "offset": o}).json()["items"]
        for o in (0, 4, 8, 12)
    ]
    ids = [item["model_id"] for page in pages for item in page]
    assert len(ids) == 13 and ids == sorted(ids)
    assert sum(item["super_weights"] for page in pages for item in page) == 33
    assert client.get("/api/v1/models", params={"offset": 13}).json()["items"] == []
    assert client.get("/api/v1/models", params={"limit": 0}).status_code == 422


def test_index_download_is_the_export(client, db_sessions):
    response = client.get("/api/v1/index")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with transaction(db_sessions) as session:
        expected = index_service.export_document(session)
    assert response.text == index_service.dumps(expected)
    # Last-Modified is the document's own time.
    generated_at = parse_time(expected["meta"]["generated_at"])
    assert response.headers["last-modified"] == format_datetime(generated_at, usegmt=True)
    schema = client.get("/api/v1/index/schema").json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_openapi_is_published(client):
    spec = client.get("/api/v1/openapi.json").json()
    assert {
        "/api/v1/health",
        "/api/v1/models",
        "/api/v1/models/{model_id}",
        "/api/v1/index",
    } <= set(spec["paths"])
    assert client.get("/api/v1/docs").status_code == 200


def test_out_of_date_database_answers_503(empty_db_url):
    with TestClient(create_app(empty_db_url)) as client:
        response = client.get("/api/v1/models/huggyllama/llama-7b")
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "database_out_of_date",
            "message": "database schema is out of date: run `swreg db upgrade`",
        }
    }
