"""Published and reported coordinates with several sources: a second import merges sources
instead of replacing them, a weight that sources place differently is disputed with each claim,
and the API, the export and `swreg lookup` show all of it (real databases, real HTTP routes)."""

import copy
import json

from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.cli import main
from registry.database import transaction
from registry.index import service as index_service
from registry.superweights import service
from tests.helpers import SHA_A, coordinate, report

MODEL = "acme/olmo-like"
FIRST = {"tensor": "model.layers.1.mlp.down_proj.weight", "index": [17, 64]}
SECOND = {"tensor": "model.layers.2.mlp.down_proj.weight", "index": [17, 64]}
PAPER = {
    "citation": "A. Author. A paper. arXiv:0000.00000 (2024)",
    "locator": "Table 2",
    "statement": "layer 1, [17, 64]",
    "url": "https://arxiv.org/abs/0000.00000",
}
CODE = {
    "citation": "A. Author. The paper's code",
    "locator": "analyze.py, MAP",
    "statement": "(2, 17, 64)",
    "url": None,
}
LATER = {
    "citation": "B. Other. A later paper (2025)",
    "locator": "Table 8",
    "statement": "layer 1, [17, 64]",
}


def _coordinate(place: dict, state: str, sources: list[dict], disputed_with=()) -> dict:
    layer = int(place["tensor"].split(".")[2])
    return {
        **place,
        "layer": layer,
        "module": "mlp.down_proj",
        "row": place["index"][0],
        "col": place["index"][1],
        "value": None,
        "dtype": None,
        "state": state,
        "provenance": {
            "citation": sources[0]["citation"],
            "sources": sources,
            "disputed_with": list(disputed_with),
        },
    }


def _document(*coordinates: dict) -> dict:
    return {
        "meta": {
            "schema_version": 1,
            "generated_at": "2026-01-01T00:00:00Z",
            "generator": {"name": "test", "version": "1"},
        },
        "models": [
            {
                "model_id": MODEL,
                "revision": "unknown",
                "revision_kind": "unknown",
                "super_weights": sorted(coordinates, key=lambda c: (c["tensor"], c["index"])),
            }
        ],
    }


# The paper's table puts the weight in layer 1; the authors' code puts it in layer 2.
PAPER_ONLY = _document(_coordinate(FIRST, "published", [PAPER], disputed_with=[SECOND]))
CODE_ONLY = _document(_coordinate(SECOND, "published", [CODE], disputed_with=[FIRST]))
# A later paper reports layer 1 too.
LATER_ONLY = _document(_coordinate(FIRST, "reported", [LATER]))


def _import(sessions, document):
    with transaction(sessions) as session:
        return index_service.import_document(session, copy.deepcopy(document))


def _coordinates(sessions) -> dict[str, dict]:
    """The claims: the coordinates at revision `unknown`."""
    with sessions() as session:
        document = service.lookup_document(session, MODEL, "unknown")
    return {sw["tensor"]: sw for sw in document["revisions"][0]["super_weights"]}


def _import_both_sources(sessions):
    for document in (PAPER_ONLY, CODE_ONLY, LATER_ONLY):
        _import(sessions, document)


def test_a_second_source_is_merged_not_replaced(db_sessions):
    _import_both_sources(db_sessions)
    found = _coordinates(db_sessions)
    first = found[FIRST["tensor"]]
    # The later report adds its source; the paper's claim keeps the coordinate `published`.
    assert first["state"] == "published"
    assert [s["citation"] for s in first["provenance"]["sources"]] == [
        PAPER["citation"],
        LATER["citation"],
    ]
    assert first["provenance"]["sources"][1] == {**LATER, "url": None}
    assert first["provenance"]["citation"] == PAPER["citation"]
    # Importing any of them again changes nothing.
    stats = _import(db_sessions, LATER_ONLY)
    assert stats.coordinates == {"created": 0, "updated": 0, "unchanged": 1}
    assert _coordinates(db_sessions) == found


def test_a_claim_from_other_work_alone_is_reported(db_sessions):
    _import(db_sessions, LATER_ONLY)
    assert _coordinates(db_sessions)[FIRST["tensor"]]["state"] == "reported"
    _import(db_sessions, PAPER_ONLY)
    assert _coordinates(db_sessions)[FIRST["tensor"]]["state"] == "published"


def test_a_disputed_weight_shows_each_claim(db_sessions):
    _import_both_sources(db_sessions)
    found = _coordinates(db_sessions)
    first, second = found[FIRST["tensor"]], found[SECOND["tensor"]]
    assert first["provenance"]["disputed_with"] == [SECOND]
    assert second["provenance"]["disputed_with"] == [FIRST]
    assert [s["statement"] for s in second["provenance"]["sources"]] == ["(2, 17, 64)"]


def test_the_api_and_the_export_show_every_source(db_url, db_sessions):
    _import_both_sources(db_sessions)
    with TestClient(create_app(db_url)) as client:
        body = client.get(f"/api/v1/models/{MODEL}").json()
        exported = client.get("/api/v1/index").json()
    for document in (body["revisions"][0], exported["models"][0]):
        claims = {sw["tensor"]: sw["provenance"] for sw in document["super_weights"]}
        assert [s["citation"] for s in claims[FIRST["tensor"]]["sources"]] == [
            PAPER["citation"],
            LATER["citation"],
        ]
        assert claims[FIRST["tensor"]]["disputed_with"] == [SECOND]
        assert [s["citation"] for s in claims[SECOND["tensor"]]["sources"]] == [CODE["citation"]]
        assert claims[SECOND["tensor"]]["disputed_with"] == [FIRST]


def test_verifying_a_reported_coordinate_marks_it_reproduced(db_sessions):
    _import(db_sessions, LATER_ONLY)
    verified = report(coordinate(1, 17, 64, 3.5, "verified", ablated=400.0, baseline=10.0))
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id=MODEL, revision=SHA_A, revision_kind="commit", report=verified
        )
    claim = _coordinates(db_sessions)[FIRST["tensor"]]
    assert claim["state"] == "reported" and claim["provenance"]["reproduced_in"] == [SHA_A]


def test_lookup_prints_each_source_and_the_dispute(cli_env, tmp_path):
    runner = CliRunner()
    for name, document in {"paper": PAPER_ONLY, "code": CODE_ONLY, "later": LATER_ONLY}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        result = runner.invoke(main, ["import", str(path)])
        assert result.exit_code == 0, result.output
    out = runner.invoke(main, ["lookup", MODEL]).stdout
    assert "published (disputed)" in out
    assert (
        f"{FIRST['tensor']} [17, 64]: disputed, other sources place it at "
        f"{SECOND['tensor']} [17, 64]"
    ) in out
    assert f"    - {PAPER['citation']}, Table 2: layer 1, [17, 64]" in out
    assert f"    - {LATER['citation']}, Table 8: layer 1, [17, 64]" in out
    assert f"    - {CODE['citation']}, analyze.py, MAP: (2, 17, 64)" in out
