"""A model revision's quantization check in the registry: recorded (or refused whole) with the
revision, served by the API, carried by the index through export → import → export, and left in
place by an index written without it. Also the by-revision lookup."""

import copy

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import service as index_service
from registry.superweights import service
from tests.helpers import CONTENT, SHA_A, other_database, quantization_check, smollm2_like_report


def _record(sessions, model_id="org/smol", revision=SHA_A, check=None) -> None:
    with transaction(sessions) as session:
        rev = service.record_report(
            session,
            model_id=model_id,
            revision=revision,
            revision_kind=service.revision_kind_of(revision),
            report=smollm2_like_report(),
        )
        service.record_quantization_check(session, rev, check or quantization_check())


def test_recorded_served_and_non_finite_numbers_as_strings(db_url, db_sessions):
    _record(db_sessions)
    with TestClient(create_app(db_url)) as client:
        (revision,) = client.get("/api/v1/models/org/smol").json()["revisions"]
    check = revision["quantization_check"]
    assert check["kept"][0]["index"] == [507, 1229]
    assert [r["perplexity"] for r in check["results"]] == [189.6, 64.65, "Infinity"]
    assert check["results"][2]["block"] is None


def test_an_invalid_check_is_refused_with_one_line_and_nothing_changes(db_sessions):
    _record(db_sessions)
    bad = quantization_check()
    bad["results"][0]["variant"] = "bogus"
    with pytest.raises(InvalidInput, match=r"^invalid quantization check at /results/0/variant: "):
        _record(db_sessions, check=bad)
    with transaction(db_sessions) as session:
        (rev,) = service.lookup(session, "org/smol", SHA_A)
        assert rev.quantization_check["results"][0]["variant"] == "clip"


def test_export_import_export_is_byte_identical_with_a_check(db_sessions, tmp_path, request):
    _record(db_sessions)
    _record(db_sessions, model_id="me/local", revision=CONTENT)
    with transaction(db_sessions) as session:
        first = index_service.dumps(index_service.export_document(session, generated_at=None))
    document = index_service.load_file(_write(tmp_path / "first.json", first))
    with other_database(db_sessions, request, tmp_path) as other:
        with transaction(other) as session:
            index_service.import_document(session, document)
        with transaction(other) as session:
            again = index_service.export_document(session)
        again["meta"]["generated_at"] = document["meta"]["generated_at"]
        assert index_service.dumps(again) == first
        # An index written without the check (older, or another tool's) leaves it in place.
        older = copy.deepcopy(document)
        for model in older["models"]:
            model.pop("quantization_check")
        with transaction(other) as session:
            index_service.import_document(session, older)
            (rev,) = service.lookup(session, "org/smol", SHA_A)
            assert rev.quantization_check == document["models"][1]["quantization_check"]


def _write(path, text: str):
    path.write_text(text)
    return path


def test_revisions_at_one_revision_under_every_model_id(db_url, db_sessions):
    _record(db_sessions, model_id="me/local", revision=CONTENT)
    _record(db_sessions, model_id="me/copy", revision=CONTENT)
    with TestClient(create_app(db_url)) as client:
        found = client.get(f"/api/v1/revisions/{CONTENT}")
        assert found.status_code == 200
        assert [r["model_id"] for r in found.json()["revisions"]] == ["me/copy", "me/local"]
        missing = client.get("/api/v1/revisions/sha256:" + "0" * 64)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        malformed = client.get("/api/v1/revisions/main")
        assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_input"
