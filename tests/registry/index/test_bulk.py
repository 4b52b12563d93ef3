"""`swreg import FILE` read a model at a time and written in batches: the same database as the
whole-document import, all or nothing, one-line errors with the place in the file, and memory
that does not grow with the document."""

import io
import json
import re
import tracemalloc

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from registry.cli import main
from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import bulk, reader
from registry.index import service as index_service
from registry.index.generate import iter_generated, write_generated
from registry.index.stream import iter_index
from registry.superweights.models import ModelRevision, SuperWeight
from tests.helpers import other_database
from workers.contract.resources import PUBLISHED_INDEX_PATH, REPORTED_SUPER_EXPERTS_PATH


@pytest.fixture
def second(db_sessions, request, tmp_path):
    """A second empty database of the same kind."""
    with other_database(db_sessions, request, tmp_path) as sessions:
        yield sessions


# A valid meta member, for documents broken elsewhere.
META = (
    '{"meta": {"schema_version": 2, "generated_at": "2026-01-01T00:00:00Z", '
    '"generator": {"name": "x", "version": "1"}}'
)


@pytest.fixture
def small_batches(monkeypatch):
    """Batches and reads small enough that every boundary is crossed many times."""
    monkeypatch.setattr(bulk, "BATCH_MODELS", 7)
    monkeypatch.setattr(reader, "READ_CHARS", 997)


def _import(sessions, path):
    with transaction(sessions) as session:
        return bulk.import_file(session, path)


def _export(sessions) -> str:
    with transaction(sessions) as session:
        return "".join(iter_index(session))


def _untimed(text: str) -> str:
    return re.sub(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', '"TIME"', text)


def _counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(ModelRevision)),
            session.scalar(select(func.count()).select_from(SuperWeight)),
        )


def test_a_generated_index_imports_and_exports_to_the_same_bytes(
    db_sessions, tmp_path, small_batches
):
    path = write_generated(tmp_path / "index.json", 40, layers=3)
    stats = _import(db_sessions, path)
    assert (stats.revisions, stats.coordinates["created"]) == (80, 240)
    assert _export(db_sessions) == path.read_text(encoding="utf-8")
    # Importing again changes nothing (those revisions now go through the upsert).
    again = _import(db_sessions, path)
    assert again.coordinates == {"created": 0, "updated": 0, "unchanged": 240}
    assert _export(db_sessions) == path.read_text(encoding="utf-8")


def test_the_shipped_documents_import_as_the_whole_document_import_does(
    db_sessions, second, small_batches
):
    for path in (PUBLISHED_INDEX_PATH, REPORTED_SUPER_EXPERTS_PATH):
        streamed = _import(db_sessions, path)
        with transaction(second) as session:
            whole = index_service.import_document(session, index_service.load_file(path))
        assert streamed.summary() == whole.summary()
    # The shipped documents carry no times: each import stamps its own clock's.
    assert _untimed(_export(db_sessions)) == _untimed(_export(second))


def test_members_in_any_order_and_compact_text(db_sessions, tmp_path, small_batches):
    document = json.loads("".join(iter_generated(5, layers=2)))
    path = tmp_path / "compact.json"
    path.write_text(json.dumps({"models": document["models"], "meta": document["meta"]}))
    assert _import(db_sessions, path).revisions == 10
    assert _export(db_sessions) == "".join(iter_generated(5, layers=2))


def test_a_bad_model_late_in_the_file_writes_nothing(db_sessions, tmp_path, small_batches):
    document = json.loads("".join(iter_generated(30, layers=2)))
    document["models"][52]["super_weights"][1]["index"] = [1, -2]
    path = tmp_path / "bad.json"
    path.write_text(index_service.dumps(document))
    with pytest.raises(InvalidInput) as error:
        _import(db_sessions, path)
    assert str(error.value) == (
        f"invalid {path}: at /models/52/super_weights/1/index/1: -2 is less than the minimum of 0"
    )
    assert _counts(db_sessions) == (0, 0)


def test_a_revision_twice_far_apart_is_refused(db_sessions, tmp_path, small_batches):
    document = json.loads("".join(iter_generated(20, layers=2)))
    document["models"].append(document["models"][3])
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(document))
    with pytest.raises(
        InvalidInput, match=r"at /models/40: gen/model-0000001 at revision \w+ appears twice$"
    ):
        _import(db_sessions, path)
    assert _counts(db_sessions) == (0, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"meta": ', r"not JSON: Expecting value at line 1 column 10$"),
        (META + ', "models": [\n  {"a": NaN}]}', r"not JSON: NaN is not JSON at line 2 column 3$"),
        (META + "}", r"at /: 'models' is a required property$"),
        ('{"models": []}', r"at /: 'meta' is a required property$"),
        ("[1]", r"at /: \[1\] is not of type 'object'$"),
        ('{"meta": {"schema_version": 7}, "models": []}', r"at /meta"),
    ],
)
def test_a_broken_document_is_one_line(db_sessions, tmp_path, text, message):
    # (A member the schema does not know is no error: fields are only ever added within a
    # schema version, docs/compatibility.md.)
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as error:
        _import(db_sessions, path)
    assert "\n" not in str(error.value)
    assert _counts(db_sessions) == (0, 0)


def test_swreg_import_of_a_missing_file(cli_env, tmp_path):
    result = CliRunner().invoke(main, ["import", str(tmp_path / "none.json")])
    assert result.exit_code != 0 and "no such file" in result.output


def _peak_import_bytes(sessions, path) -> int:
    tracemalloc.start()
    try:
        _import(sessions, path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_document(db_sessions, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_MODELS", 10)
    monkeypatch.setattr(reader, "READ_CHARS", 1 << 16)
    # A first import warms what a process keeps whatever the document (lazy imports, the
    # engine's compiled statements); the small document still spans several batches, so that
    # both peaks hold a batch being written beside the one being read, and the caches that
    # fill with the first batches' shapes (bounded) are full in both.
    _import(db_sessions, write_generated(tmp_path / "warm.json", 20, layers=30, start=10_000))
    small = write_generated(tmp_path / "small.json", 60, layers=30)
    large = write_generated(tmp_path / "large.json", 600, layers=30, start=1_000)
    assert large.stat().st_size > 9 * small.stat().st_size
    small_peak = _peak_import_bytes(db_sessions, small)
    large_peak = _peak_import_bytes(db_sessions, large)
    # Ten times the document, about the same peak (one batch); a whole-document reader would
    # need ten times as much.
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)


@pytest.mark.parametrize(
    "text",
    [
        # What msgspec refuses and json reads: a lone surrogate, a number out of range.
        '{"models": [\n  {\n    "a": "\\ud800"\n  },\n  {\n    "b": 1e400\n  }\n]}',
        # A brace closing at the model's indent before the model ends (a wrong guess).
        '{"models": [\n  {"a": {\n  },\n  "b": [1,\n  2]\n  }\n]}',
        # Compact, and indented with tabs.
        '{"models": [{"a": 1}, {"b": {"c": [1, 2.5, null, true]}}]}',
        '{"models": [\n\t{\n\t\t"a": 1\n\t},\n\t{\n\t\t"b": "}"\n\t}\n]}',
    ],
)
def test_the_reader_reads_what_json_reads_however_the_text_is_laid_out(text, monkeypatch):
    monkeypatch.setattr(reader, "READ_CHARS", 5)  # every value crosses reads
    members = list(reader.members(io.StringIO(text)))
    assert members == [("models", reader.ARRAY)] + [
        ("models", model) for model in json.loads(text)["models"]
    ]


def test_an_indented_document_is_read_by_the_fast_decoder(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(reader, "_FAST_DECODE", lambda text: calls.append(text) or json.loads(text))
    path = write_generated(tmp_path / "index.json", 30, layers=2)
    with path.open(encoding="utf-8") as handle:
        models = [v for k, v in reader.members(handle) if k == "models" and v is not reader.ARRAY]
    assert models == json.loads(path.read_text())["models"]
    # Every model, each decoded once (a model cut by the end of a read is read on first).
    assert len(calls) == len(models)


@pytest.mark.postgres
def test_postgresqls_planner_knows_the_imported_rows(postgres_schema, tmp_path):
    """After a bulk load PostgreSQL's statistics still describe the empty tables until
    autovacuum analyses them: the import analyses what it wrote (otherwise every model-list page
    joined a sequential scan of all coordinates: 125-145 ms a page at 100,000 models)."""
    from sqlalchemy import text

    from registry import migrate
    from registry.database import make_engine, make_sessionmaker

    url = postgres_schema()
    migrate.upgrade(url)
    engine = make_engine(url)
    db_sessions = make_sessionmaker(engine)
    path = write_generated(tmp_path / "index.json", 30, layers=2)

    def planned() -> dict[str, float]:
        with db_sessions() as session:
            rows = session.execute(
                text(
                    "SELECT relname, reltuples FROM pg_class WHERE relname IN "
                    "('model_revisions', 'super_weights') AND relnamespace = "
                    "current_schema()::regnamespace"
                )
            )
            return {name: tuples for name, tuples in rows}

    try:
        before = planned()
        assert all(tuples <= 0 for tuples in before.values()), before  # never analysed
        _import(db_sessions, path)
        assert planned() == {"model_revisions": 60, "super_weights": 180}
    finally:
        engine.dispose()
