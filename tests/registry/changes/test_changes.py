"""The changes feed over real HTTP through the Python client, and `swreg export --since`: a
mirror that starts empty and applies every page holds what the registry holds, and stays in step
by reading only what changed."""

import json

import httpx
import pytest
from click.testing import CliRunner

from registry.app import create_app
from registry.changes.service import Cursor
from registry.cli import main
from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import service as index_service
from registry.index.generate import write_generated
from registry.index.stream import iter_index, meta_document
from registry.superweights import service
from swreg.client import Client
from swreg.errors import InvalidInput as ClientInvalidInput
from tests.helpers import SHA, SHA_A, LiveServer, other_database, tiny_report

COORDINATE = ("model.layers.11.mlp.down_proj.weight", [507, 1229])


@pytest.fixture
def mirror(db_sessions, request, tmp_path):
    with other_database(db_sessions, request, tmp_path) as sessions:
        yield sessions


def _export(sessions) -> str:
    with transaction(sessions) as session:
        return "".join(iter_index(session))


def _apply(mirror, pages) -> list[tuple[str, str, str]]:
    """Apply feed pages to the mirror; what they said, as (change, model id, revision)."""
    seen = []
    for page in pages:
        models = [change.model for change in page.changes]
        with transaction(mirror) as session:
            index_service.import_document(
                session,
                {"meta": meta_document(index_service.EMPTY_REGISTRY_TIME), "models": models},
            )
        seen += [(c.change, c.model_id, c.revision) for c in page.changes]
    return seen


def _record(sessions, model_id, revision, report) -> None:
    with transaction(sessions) as session:
        service.record_report(
            session, model_id=model_id, revision=revision, revision_kind="commit", report=report
        )


def test_the_feed_reproduces_the_registry_in_an_empty_mirror(
    db_url, db_sessions, mirror, report, tmp_path, cli_env
):
    generated = write_generated(tmp_path / "index.json", 12, layers=2)
    assert CliRunner().invoke(main, ["import", str(generated)]).exit_code == 0
    _record(db_sessions, "org/smol", SHA_A, report)
    with LiveServer(create_app(db_url)) as live, Client(live.url) as api:
        pages = list(api.iter_changes(0, limit=5))
        assert [len(p.changes) for p in pages] == [5, 5, 5, 5, 5]
        seen = _apply(mirror, pages)
        assert {change for change, _, _ in seen} == {"added"} and len(seen) == 25
        assert _export(mirror) == _export(db_sessions)
        cursor = pages[-1].next

        # Nothing changed: nothing to read, the same cursor.
        (quiet,) = api.iter_changes(cursor)
        assert quiet.changes == [] and quiet.next == cursor

        # A new revision, a retraction, and a revision re-recorded with another verdict.
        _record(db_sessions, "org/new", SHA, tiny_report())
        with transaction(db_sessions) as session:
            service.retract(
                session, service.get_coordinate(session, "org/smol", SHA_A, *COORDINATE), "wrong"
            )
        changed = json.loads(json.dumps(report))
        changed["super_weights"][1]["value"] = -0.5
        _record(db_sessions, "org/smol2", SHA_A, report)
        _record(db_sessions, "org/smol2", SHA_A, changed)

        pages = list(api.iter_changes(cursor, limit=2))
        seen = _apply(mirror, pages)
        assert sorted(seen) == [
            ("added", "org/new", SHA),
            ("added", "org/smol2", SHA_A),
            ("retracted", "org/smol", SHA_A),
        ]
        assert _export(mirror) == _export(db_sessions)

        # Changed again after the mirror read it: updated, not added.
        with transaction(db_sessions) as session:
            service.retract(
                session,
                service.get_coordinate(session, "org/smol2", SHA_A, *COORDINATE),
                "also wrong",
            )
        _record(db_sessions, "org/new", SHA, report)
        (page,) = api.iter_changes(pages[-1].next)
        assert sorted((c.change, c.model_id) for c in page.changes) == [
            ("retracted", "org/smol2"),
            ("updated", "org/new"),
        ]
        _apply(mirror, [page])
        assert _export(mirror) == _export(db_sessions)


def test_a_bad_cursor_is_one_line(db_url, published):
    with LiveServer(create_app(db_url)) as live:
        for bad in ("x", "-1", "1.0", "01", "1.2.3", "9" * 19):
            response = httpx.get(f"{live.url}/api/v1/changes", params={"since": bad})
            assert response.status_code == 422, bad
            assert response.json()["error"]["message"].startswith("query.since: ")
        with Client(live.url) as api, pytest.raises(ClientInvalidInput, match="since"):
            api.changes("yesterday")
    assert str(Cursor.parse("12.34")) == "12.34" and Cursor.parse("0") == Cursor(0, None)
    with pytest.raises(InvalidInput, match="invalid cursor"):
        Cursor.parse("")


def test_swreg_export_since_writes_only_what_changed(
    cli_env, db_sessions, mirror, report, tmp_path
):
    _record(db_sessions, "org/a", SHA_A, report)
    full = tmp_path / "full.json"
    result = CliRunner().invoke(main, ["export", "--since", "0", "-o", str(full)])
    assert result.exit_code == 0, result.output
    cursor = result.stderr.strip().splitlines()[-1].split()[-1]
    assert json.loads(full.read_text())["models"][0]["model_id"] == "org/a"

    _record(db_sessions, "org/b", SHA, tiny_report())
    delta = tmp_path / "delta.json"
    result = CliRunner().invoke(main, ["export", "--since", cursor, "-o", str(delta)])
    assert result.exit_code == 0, result.output
    assert [m["model_id"] for m in json.loads(delta.read_text())["models"]] == ["org/b"]
    for path in (full, delta):
        with transaction(mirror) as session:
            index_service.import_document(session, index_service.load_file(path))
    assert _export(mirror) == _export(db_sessions)
    bad = CliRunner().invoke(main, ["export", "--since", "soon"])
    assert bad.exit_code != 0 and "invalid cursor" in bad.stderr
