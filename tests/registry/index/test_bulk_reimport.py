"""Re-importing revisions the registry holds, in bulk: the same database as the row-by-row
upsert (`import_document`), byte for byte and stamp for stamp, in a number of statements that
does not grow with the revisions; all or nothing with the reading and the writing in two
threads."""

import copy
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select

from registry import clock
from registry.data_version import current_version
from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import bulk, reader
from registry.index import service as index_service
from registry.index.generate import generated_models
from registry.index.stream import iter_index, meta_document
from registry.superweights import service
from registry.superweights import service as sw_service
from registry.superweights.models import ModelRevision
from tests.helpers import SHA, other_database, smollm2_like_report
from workers.contract.resources import PUBLISHED_INDEX_PATH, REPORTED_SUPER_EXPERTS_PATH

# Every write of the test happens "now" at this time: the two paths' stamps can be compared.
NOW = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
REPORTED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
GENERATED = 12
# Batches small enough that held and new revisions share batches and every boundary is crossed.
SMALL_BATCH = 5
# Statements one batch of held revisions may take: the data version, three reads, and one
# write per table and set of changed columns (this document changes at most a few per table).
STATEMENTS_PER_BATCH = 16


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    for module in (bulk, sw_service):
        monkeypatch.setattr(module, "utcnow_seconds", lambda: NOW)
    monkeypatch.setattr(clock, "utcnow_seconds", lambda: NOW)


@pytest.fixture
def second(db_sessions, request, tmp_path):
    with other_database(db_sessions, request, tmp_path) as sessions:
        yield sessions


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_MODELS", SMALL_BATCH)
    monkeypatch.setattr(reader, "READ_CHARS", 4093)


def _registry(sessions) -> None:
    """Claims with sources (coordinates and super experts), generated detections, a recorded
    report with a quantization check, and a retracted coordinate."""
    with transaction(sessions) as session:
        for path in (PUBLISHED_INDEX_PATH, REPORTED_SUPER_EXPERTS_PATH):
            index_service.import_document(session, index_service.load_file(path))
        document = {
            "meta": meta_document(NOW),
            "models": list(generated_models(GENERATED, layers=3)),
        }
        index_service.import_document(session, document)
        rev = service.record_report(
            session,
            model_id=REPORTED_MODEL,
            revision=SHA,
            revision_kind="commit",
            report=smollm2_like_report(),
        )
        rev.quantization_check = {"bits": [4], "note": "kept when a document has none"}
        rejected = next(sw for sw in rev.super_weights if sw.state == "rejected")
        service.retract(session, rejected, "a person looked again")


def _export(sessions) -> str:
    with transaction(sessions) as session:
        return "".join(iter_index(session))


def _version(sessions) -> int:
    with transaction(sessions) as session:
        return current_version(session)


def _stamps(sessions, before: int) -> set[tuple]:
    """Each revision with what the changes feed says of it since data version `before`: whether
    a later write created it, whether one changed it, and the last change's kind. (The version
    numbers themselves differ: the row-by-row upsert bumps the version at every autoflush, the
    bulk import once.)"""
    with transaction(sessions) as session:
        rows = session.execute(
            select(
                ModelRevision.model_id,
                ModelRevision.revision,
                ModelRevision.created_version,
                ModelRevision.changed_version,
                ModelRevision.last_change,
            )
        )
        return {(m, r, made > before, changed > before, kind) for m, r, made, changed, kind in rows}


def _model(document, model_id, revision=None):
    return next(
        m
        for m in document["models"]
        if m["model_id"] == model_id and (revision is None or m["revision"] == revision)
    )


def _changed_document(exported: str) -> dict:
    """What the registry exported, changed in every way an import can change a held revision,
    and three revisions it does not hold."""
    document = json.loads(exported)
    changed = copy.deepcopy(document)
    # A second source of a published claim (merged), and a claim retracted by the document.
    olmo = _model(changed, "allenai/OLMo-1B-0724-hf")
    olmo["super_weights"][0]["provenance"]["sources"].append(
        {"citation": "Another paper (2027)", "locator": "Table 9", "statement": None, "url": None}
    )
    olmo["super_weights"][0]["state"] = "reported"
    olmo["super_weights"][1]["state"] = "retracted"
    olmo["super_weights"][1]["provenance"]["retraction_reason"] = "the paper's erratum"
    olmo["super_weights"][1]["provenance"]["retracted_at"] = "2027-01-02T00:00:00Z"
    # A super-expert claim with another source (merged), and a new super expert.
    qwen = _model(changed, "Qwen/Qwen3-30B-A3B")
    qwen["super_experts"][0]["provenance"]["sources"].append(
        {"citation": "Another paper (2027)", "locator": "Fig. 2", "statement": None, "url": None}
    )
    new_expert = copy.deepcopy(qwen["super_experts"][0])
    new_expert.update(layer=47, expert=101)
    new_expert["provenance"]["disputed_with"] = []
    qwen["super_experts"].append(new_expert)
    # Detections: a profile, a value, a new coordinate, a coordinate left out (kept).
    models = [m for m in changed["models"] if m["model_id"].startswith("gen/")]
    models[0]["profile"]["layers"][1]["max_abs_output"] = 99.5
    models[1]["super_weights"][0]["value"] = -3.25
    extra = copy.deepcopy(models[2]["super_weights"][0])
    extra["index"] = [1, 2]
    extra.update(row=1, col=2, tensor="model.layers.2.mlp.down_proj.weight", layer=2)
    models[2]["super_weights"].append(extra)
    del models[3]["super_weights"][0]
    models[4]["created_at"] = "2025-06-01T00:00:00Z"
    # The recorded report: no quantization check (kept); its retracted coordinate stays as the
    # export says; its verified one is stated as retracted by the document.
    reported = _model(changed, REPORTED_MODEL, SHA)
    del reported["quantization_check"]
    verified = next(c for c in reported["super_weights"] if c["state"] == "verified")
    verified["state"] = "retracted"
    verified["provenance"]["retraction_reason"] = "not reproduced"
    changed["models"] += list(generated_models(3, layers=3, start=GENERATED))
    assert changed != document
    return changed


def _write(path, document) -> None:
    path.write_text(index_service.dumps(document), encoding="utf-8")


def test_a_reimport_in_bulk_gives_what_the_row_by_row_upsert_gives(
    db_sessions, second, tmp_path, small_batches
):
    for sessions in (db_sessions, second):
        _registry(sessions)
    assert _export(db_sessions) == _export(second)
    document = _changed_document(_export(db_sessions))
    path = tmp_path / "changed.json"
    _write(path, document)

    before = _version(db_sessions)
    assert _version(second) == before
    with transaction(db_sessions) as session:
        in_bulk = bulk.import_file(session, path)
    with transaction(second) as session:
        row_by_row = index_service.import_document(session, index_service.load_file(path))

    assert in_bulk.summary() == row_by_row.summary()
    assert in_bulk.coordinates["created"] > 0 and in_bulk.coordinates["updated"] > 0
    assert in_bulk.super_experts["created"] == 1 and in_bulk.super_experts["updated"] > 0
    assert _export(db_sessions) == _export(second)
    # The changes feed: the same revisions changed, with the same kinds, the rest untouched.
    stamps = _stamps(db_sessions, before)
    assert stamps == _stamps(second, before)
    assert _version(db_sessions) == before + 1  # one import, one data version
    kinds = {(m, r): kind for m, r, _, changed, kind in stamps if changed}
    assert kinds[("allenai/OLMo-1B-0724-hf", "unknown")] == "retracted"
    assert kinds[(REPORTED_MODEL, SHA)] == "retracted"
    assert kinds[("Qwen/Qwen3-30B-A3B", "unknown")] == "updated"
    new = next(generated_models(1, layers=3, start=GENERATED))
    assert kinds[(new["model_id"], new["revision"])] == "added"
    assert ("google/gemma-7b", "unknown") not in kinds  # unchanged: not stamped

    # Importing the same document again changes nothing, not even the data version.
    with transaction(db_sessions) as session:
        again = bulk.import_file(session, path)
    assert again.coordinates["created"] == again.coordinates["updated"] == 0
    assert again.super_experts["created"] == again.super_experts["updated"] == 0
    assert _version(db_sessions) == before + 1


def _statements(sessions):
    counted: list[str] = []
    engine = sessions.kw["bind"]

    def count(_conn, _cursor, statement, *_args) -> None:
        counted.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return counted, lambda: event.remove(engine, "before_cursor_execute", count)


def test_held_revisions_are_written_in_bulk_not_row_by_row(db_sessions, tmp_path, small_batches):
    _registry(db_sessions)
    document = json.loads(_export(db_sessions))
    for model in document["models"]:
        for coord in model["super_weights"]:
            coord["evidence"] = {**coord["evidence"], "note": "seen again"}
    path = tmp_path / "changed.json"
    _write(path, document)
    counted, stop = _statements(db_sessions)
    try:
        with transaction(db_sessions) as session:
            stats = bulk.import_file(session, path)
    finally:
        stop()
    batches = -(-len(document["models"]) // SMALL_BATCH)
    assert stats.coordinates["updated"] > 3 * len(counted) / batches
    assert len(counted) <= STATEMENTS_PER_BATCH * batches, counted


def test_a_failed_reimport_leaves_held_revisions_as_they_were(db_sessions, tmp_path, small_batches):
    _registry(db_sessions)
    before, version = _export(db_sessions), _version(db_sessions)
    stamps = _stamps(db_sessions, version)
    document = _changed_document(before)
    document["models"][-1]["super_weights"][0]["index"] = [1, -2]
    path = tmp_path / "bad.json"
    _write(path, document)
    with pytest.raises(InvalidInput, match=r"at /models/\d+/super_weights/0/index/1: -2 is less"):
        with transaction(db_sessions) as session:
            bulk.import_file(session, path)
    assert _export(db_sessions) == before
    assert (_version(db_sessions), _stamps(db_sessions, version)) == (version, stamps)


def test_an_error_writing_an_earlier_batch_is_the_one_reported(
    db_sessions, tmp_path, small_batches, monkeypatch
):
    # The writing thread fails on the first batch while the reading thread fails later in the
    # file: the first error in file order is the one said, and nothing is written.
    document = {"meta": meta_document(NOW), "models": list(generated_models(20, layers=2))}
    document["models"][SMALL_BATCH]["revision"] = "main"  # the second batch's first
    path = tmp_path / "two-errors.json"
    _write(path, document)
    real = bulk._Importer._write

    def failing(self, models):
        real(self, models)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(bulk._Importer, "_write", failing)
    with pytest.raises(RuntimeError, match="went away"):
        with transaction(db_sessions) as session:
            bulk.import_file(session, path)
    with transaction(db_sessions) as session:
        assert session.scalar(select(ModelRevision.id).limit(1)) is None
