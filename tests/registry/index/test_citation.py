"""A citable, evolvable index: the licence and CITATION.cff agree with the package; the index's
meta carries its licence and how to cite it; verified coordinates cite swreg at their detector's
version (derived, so export → import → export stays byte-identical); the schema describes every
field and leaves its objects open, so a document with fields added within its version stays
valid, and older documents stay valid too."""

import copy
import json
import tomllib

import yaml
from jsonschema import Draft202012Validator

from registry import __version__
from registry.citation import LICENSE, TITLE, index_citation, swreg_citation
from registry.database import transaction
from registry.index import service as index_service
from registry.superweights import service
from tests.helpers import REPO_ROOT, SHA_A, other_database, smollm2_like_report
from workers.contract.resources import INDEX_SCHEMA_PATH, PUBLISHED_INDEX_PATH


def _export(sessions) -> str:
    from registry.clock import parse_time

    with transaction(sessions) as session:
        return index_service.dumps(
            index_service.export_document(session, generated_at=parse_time("2026-01-01T00:00:00Z"))
        )


def _fill(sessions) -> None:
    with transaction(sessions) as session:
        index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
        service.record_report(
            session,
            model_id="org/smol",
            revision=SHA_A,
            revision_kind="commit",
            report=smollm2_like_report(),
        )


def test_the_licence_and_citation_files_agree_with_the_package():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == {"text": LICENSE}
    assert (REPO_ROOT / "LICENSE").read_text().startswith("MIT License\n")
    cff = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert (cff["title"], cff["license"]) == (TITLE, LICENSE)
    assert cff["version"] == pyproject["project"]["version"]
    assert any("arXiv:2411.07191" in str(ref["identifiers"]) for ref in cff["references"])


def test_the_index_carries_its_licence_and_how_to_cite_it(db_sessions):
    _fill(db_sessions)
    meta = json.loads(_export(db_sessions))["meta"]
    assert meta["license"] == "MIT"
    assert meta["citation"] == index_citation(__version__)
    assert "CITATION.cff" in meta["citation"] and "arXiv:2411.07191" in meta["citation"]


def test_verified_coordinates_cite_swreg_and_its_version(db_sessions, tmp_path, request):
    _fill(db_sessions)
    first = _export(db_sessions)
    smol = next(m for m in json.loads(first)["models"] if m["model_id"] == "org/smol")
    by_state = {sw["state"]: sw["provenance"] for sw in smol["super_weights"]}
    assert by_state["verified"]["citation"] == swreg_citation("0.1.0")  # the report's detector
    assert by_state["rejected"]["citation"] is None  # nothing to cite
    llama = next(m for m in json.loads(first)["models"] if m["model_id"] == "huggyllama/llama-7b")
    assert llama["super_weights"][0]["provenance"]["citation"].startswith(
        "Yu, Wang, Shan, Reed, Wan"
    )
    # Derived, never stored: a round trip gives the same bytes.
    with other_database(db_sessions, request, tmp_path) as other:
        with transaction(other) as session:
            index_service.import_document(session, json.loads(first))
        assert _export(other) == first


def _schema_objects(node, path=""):
    """Every object schema with `properties`, outside the conditional (if/then) parts."""
    if isinstance(node, dict):
        if "properties" in node and isinstance(node["properties"], dict):
            yield path, node
        for key, value in node.items():
            if key not in ("if", "then", "allOf"):
                yield from _schema_objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schema_objects(value, f"{path}/{i}")


def test_every_field_of_the_schema_is_described_and_no_object_is_closed():
    schema = json.loads(INDEX_SCHEMA_PATH.read_text())
    assert "within one schema version" in schema["description"].lower()
    undescribed = [
        f"{path}/{name}"
        for path, node in _schema_objects(schema)
        for name, field in node["properties"].items()
        if isinstance(field, dict) and "description" not in field
    ]
    assert undescribed == []
    closed = [
        path for path, node in _schema_objects(schema) if node.get("additionalProperties") is False
    ]
    assert closed == []


def test_a_document_with_fields_added_within_its_version_is_valid_and_imports(
    db_sessions, tmp_path, request
):
    _fill(db_sessions)
    document = json.loads(_export(db_sessions))
    later = copy.deepcopy(document)
    later["meta"]["mirrors"] = ["https://example.org/index.json"]
    model = later["models"][0]
    model["license_of_weights"] = "llama2"
    model["super_weights"][0]["confidence"] = 0.99
    model["super_weights"][0]["provenance"]["doi"] = "10.0000/example"
    model["super_weights"][0]["provenance"]["sources"][0]["page"] = 5
    index_service.validate_document(later)
    # Imported, the fields it knows are kept and the rest ignored: the export is the original's.
    with other_database(db_sessions, request, tmp_path) as other:
        with transaction(other) as session:
            index_service.import_document(session, later)
        assert _export(other) == index_service.dumps(document)


def test_older_documents_stay_valid():
    published = index_service.load_file(PUBLISHED_INDEX_PATH)  # schema version 1, no licence
    assert published["meta"]["schema_version"] == 1 and "license" not in published["meta"]
    Draft202012Validator(index_service.schema()).validate(published)
    version_2_without_the_new_meta = {
        **published,
        "meta": {**published["meta"], "schema_version": 2},
    }
    index_service.validate_document(version_2_without_the_new_meta)
