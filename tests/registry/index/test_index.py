"""The JSON index: schema, published data, idempotent import, all-or-nothing, round trip."""

import copy
import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from sqlalchemy import func, select

from registry.citation import index_citation
from registry.cli import main
from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import document as index_document
from registry.index import service as index_service
from registry.superweights import service
from registry.superweights.models import ModelRevision, SuperWeight
from tests.helpers import CONTENT, SHA, SHA_A, other_database
from workers.contract.resources import PUBLISHED_INDEX_PATH

PINNED = datetime(2026, 1, 1, tzinfo=UTC)
PAPER_CITATION = (
    "Yu, Wang, Shan, Reed, Wan. The Super Weight in Large Language Models. arXiv:2411.07191 (2024)"
)
CODE_URL = "https://github.com/mengxiayu/LLMSuperWeight"

# Written out independently of data/published_index.json: (model, layer, row, col).
# The paper's table (Table 2), as public transcriptions of it read it.
PAPER_TABLE = {
    ("huggyllama/llama-7b", 2, 3968, 7003),
    ("huggyllama/llama-13b", 2, 2231, 2278),
    ("huggyllama/llama-13b", 2, 2231, 6939),
    ("huggyllama/llama-30b", 3, 5633, 12817),
    ("huggyllama/llama-30b", 3, 5633, 17439),
    ("huggyllama/llama-30b", 10, 5633, 14386),
    ("meta-llama/Llama-2-7b-hf", 1, 2533, 7890),
    ("meta-llama/Llama-2-13b-hf", 3, 4743, 7678),
    ("mistralai/Mistral-7B-v0.1", 1, 2070, 7310),
    ("allenai/OLMo-1B-0724-hf", 1, 1764, 1710),
    ("allenai/OLMo-1B-0724-hf", 1, 1764, 8041),
    ("allenai/OLMo-7B-0724-hf", 1, 269, 7467),
    ("allenai/OLMo-7B-0724-hf", 2, 269, 8275),
    ("allenai/OLMo-7B-0724-hf", 7, 269, 453),
    ("allenai/OLMo-7B-0724-hf", 24, 269, 2300),
    *{
        ("microsoft/Phi-3-mini-4k-instruct", layer, r, c)
        for layer, c in ((2, 808), (4, 2723))
        for r in (525, 1693, 1113)
    },
}
# The authors' code (analyze.py, SUPER_WEIGHTS_MAP): no Llama-2; Llama-3-8B; OLMo-1B's second in layer 2.
AUTHORS_CODE = (
    (
        {c for c in PAPER_TABLE if not c[0].startswith("meta-llama/Llama-2")}
        - {("allenai/OLMo-1B-0724-hf", 1, 1764, 8041)}
    )
    | {("allenai/OLMo-1B-0724-hf", 2, 1764, 8041)}
    | {("meta-llama/Meta-Llama-3-8B", 1, r, 2427) for r in (788, 1384, 4062)}
)
# Other sources: a fork of the authors' code, the authors' plotting map, Su et al. (2025) Table 8.
REPORTED = {
    *{("meta-llama/Meta-Llama-3-8B-Instruct", 1, r, 2427) for r in (788, 1384, 4062)},
    ("google/gemma-7b", 0, 1995, 21041),
    *{("meta-llama/Llama-3.2-1B", 1, r, 1417) for r in (400, 698, 2029, 1159)},
}
COORDINATES, MODELS = 33, 13


def _export(sessions) -> str:
    with transaction(sessions) as session:
        return index_service.dumps(index_service.export_document(session, generated_at=PINNED))


def _counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(ModelRevision)),
            session.scalar(select(func.count()).select_from(SuperWeight)),
        )


def _import(sessions, document):
    with transaction(sessions) as session:
        return index_service.import_document(session, document)


def _claims(document) -> dict[tuple, dict]:
    return {
        (model["model_id"], sw["layer"], sw["row"], sw["col"]): sw
        for model in document["models"]
        for sw in model["super_weights"]
    }


def test_published_index_states_every_coordinate_with_its_sources():
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    for model in document["models"]:
        assert (model["revision"], model["revision_kind"]) == ("unknown", "unknown")
        for sw in model["super_weights"]:
            assert sw["tensor"] == f"model.layers.{sw['layer']}.mlp.down_proj.weight"
            assert sw["index"] == [sw["row"], sw["col"]]
            assert (sw["module"], sw["value"], sw["dtype"]) == ("mlp.down_proj", None, None)
            sources = sw["provenance"]["sources"]
            assert sources and all(s["citation"] and s["statement"] and s["url"] for s in sources)
            assert sw["provenance"]["citation"] in {s["citation"] for s in sources}
    claims = _claims(document)
    assert len(claims) == COORDINATES and len(document["models"]) == MODELS

    def stated_by(predicate):
        return {
            key
            for key, sw in claims.items()
            if any(predicate(s) for s in sw["provenance"]["sources"])
        }

    assert stated_by(lambda s: s["citation"] == PAPER_CITATION) == PAPER_TABLE
    assert (
        stated_by(lambda s: s["url"] == CODE_URL and "SUPER_WEIGHTS_MAP" in s["locator"])
        == AUTHORS_CODE
    )
    assert {
        key for key, sw in claims.items() if sw["state"] == "published"
    } == PAPER_TABLE | AUTHORS_CODE
    assert {key for key, sw in claims.items() if sw["state"] == "reported"} == REPORTED


def test_olmo_1b_second_super_weight_is_disputed_with_each_claim():
    claims = _claims(index_service.load_file(PUBLISHED_INDEX_PATH))
    table = claims[("allenai/OLMo-1B-0724-hf", 1, 1764, 8041)]
    code = claims[("allenai/OLMo-1B-0724-hf", 2, 1764, 8041)]
    assert table["provenance"]["disputed_with"] == [
        {"tensor": code["tensor"], "index": code["index"]}
    ]
    assert code["provenance"]["disputed_with"] == [
        {"tensor": table["tensor"], "index": table["index"]}
    ]
    (code_source,) = code["provenance"]["sources"]
    assert code_source["citation"].startswith("Yu, Wang, Shan, Reed, Wan. LLMSuperWeight")
    assert "(2, 1764, 8041)" in code_source["statement"]
    assert any(
        '(1, "mlp.down_proj", 1764, 8041)' in s["statement"] for s in table["provenance"]["sources"]
    )
    # The first super weight is where every source puts it.
    assert claims[("allenai/OLMo-1B-0724-hf", 1, 1764, 1710)]["provenance"]["disputed_with"] == []


def test_published_index_is_in_canonical_form():
    text = PUBLISHED_INDEX_PATH.read_text(encoding="utf-8")
    assert index_service.dumps(json.loads(text)) == text


def test_import_is_idempotent(db_sessions):
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    first = _import(db_sessions, document)
    once = _export(db_sessions)
    second = _import(db_sessions, document)
    assert _counts(db_sessions) == (MODELS, COORDINATES)
    assert _export(db_sessions) == once
    assert first.coordinates["created"] == COORDINATES
    assert second.coordinates == {"created": 0, "updated": 0, "unchanged": COORDINATES}


def _fill(sessions, report):
    """A registry with every kind of entry: published, reproduced, verified, rejected, retracted."""
    _import(sessions, index_service.load_file(PUBLISHED_INDEX_PATH))
    with transaction(sessions) as session:
        service.record_report(
            session, model_id="org/smol", revision=SHA_A, revision_kind="commit", report=report
        )
        service.record_report(
            session, model_id="org/smol", revision=CONTENT, revision_kind="content", report=report
        )
        llama = copy.deepcopy(report)
        llama["super_weights"] = [
            dict(
                report["super_weights"][0],
                tensor="model.layers.2.mlp.down_proj.weight",
                index=[3968, 7003],
                layer=2,
                row=3968,
                col=7003,
                value=-1.0e-3,
            )
        ]
        service.record_report(
            session,
            model_id="huggyllama/llama-7b",
            revision=SHA,
            revision_kind="commit",
            report=llama,
        )
        sw = service.get_coordinate(
            session, "org/smol", SHA_A, "model.layers.28.mlp.down_proj.weight", [507, 678]
        )
        service.retract(
            session, sw, "a spike, not a super weight: ablation leaves perplexity unchanged"
        )


def test_export_validates_against_the_schema(db_sessions, report):
    _fill(db_sessions, report)
    document = json.loads(_export(db_sessions))
    Draft202012Validator(index_service.schema()).validate(document)
    assert [(m["model_id"], m["revision"]) for m in document["models"]] == sorted(
        (m["model_id"], m["revision"]) for m in document["models"]
    )
    states = {sw["state"] for m in document["models"] for sw in m["super_weights"]}
    assert states == {"published", "reported", "verified", "rejected", "retracted"}
    version = document["meta"]["generator"]["version"]
    assert document["meta"] == {
        "schema_version": 2,
        "generated_at": "2026-01-01T00:00:00Z",
        "generator": {"name": "swreg", "version": version},
        "license": "MIT",
        "citation": index_citation(version),
    }


def test_round_trip_is_byte_identical(db_sessions, report, tmp_path, request):
    _fill(db_sessions, report)
    first = _export(db_sessions)
    with other_database(db_sessions, request, tmp_path) as other:
        _import(other, json.loads(first))
        assert _export(other) == first


def test_the_profile_is_stored_and_round_trips(db_sessions, report, tmp_path):
    """A recorded revision keeps its report's per-layer profile (every prompt's entry, non-finite
    numbers as strings); the index carries it, and importing that index gives the same bytes."""
    report = copy.deepcopy(report)
    report["profile"][5]["prompts"][0]["spike_ratio"] = float("inf")
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id="org/smol", revision=SHA_A, revision_kind="commit", report=report
        )
    first = _export(db_sessions)
    (model,) = json.loads(first)["models"]
    profile = model["profile"]
    assert profile["prompts"] == report["prompts"]
    assert profile["super_activation_ratio"] == 100.0
    assert profile["detector_version"] == report["detector"]["version"]
    assert len(profile["layers"]) == 30
    assert profile["layers"][11]["prompts"] == report["profile"][11]["prompts"]
    assert profile["layers"][11]["spike"] is True
    assert profile["layers"][5]["prompts"][0]["spike_ratio"] == "Infinity"
    Draft202012Validator(index_service.schema()).validate(json.loads(first))

    other = f"sqlite:///{tmp_path / 'other.db'}"
    from registry import migrate
    from registry.database import make_engine, make_sessionmaker

    migrate.upgrade(other)
    engine = make_engine(other)
    try:
        _import(make_sessionmaker(engine), json.loads(first))
        assert _export(make_sessionmaker(engine)) == first
    finally:
        engine.dispose()


def test_a_malformed_profile_is_refused(db_sessions, report):
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id="org/smol", revision=SHA_A, revision_kind="commit", report=report
        )
    document = json.loads(_export(db_sessions))
    document["models"][0]["profile"]["layers"][3]["max_abs_output"] = "huge"
    with pytest.raises(InvalidInput, match=r"at /models/0/profile/layers/3/max_abs_output: "):
        index_service.validate_document(document)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["models"][1]["super_weights"][0].update(state="bogus"),
            "at /models/1/super_weights/0/state: 'bogus' is not one of",
        ),
        (
            lambda d: d["models"][0].update(revision="main"),
            "at /models/0/revision: 'main' does not match",
        ),
        (
            lambda d: d["models"][0].update(revision=SHA_A),
            "at /models/0/revision_kind: 'commit' was expected",
        ),
        (
            lambda d: d["models"][2]["super_weights"][0].pop("row"),
            "at /models/2/super_weights/0: 'row' is a required property",
        ),
        (
            lambda d: d["meta"].update(schema_version=3),
            "at /meta/schema_version: 3 is not one of [1, 2]",
        ),
        (
            lambda d: d["models"].append(copy.deepcopy(d["models"][0])),
            "at /models/13: allenai/OLMo-1B-0724-hf at revision unknown appears twice",
        ),
        (
            lambda d: d["models"][12]["super_weights"].append(
                copy.deepcopy(d["models"][12]["super_weights"][0])
            ),
            "at /models/12/super_weights/1: ",
        ),
        (
            lambda d: d["models"][12]["super_weights"][0]["provenance"]["sources"][0].pop(
                "citation"
            ),
            "at /models/12/super_weights/0/provenance/sources/0: 'citation' is a required property",
        ),
        (
            lambda d: d["models"][12]["super_weights"][0]["provenance"].update(
                disputed_with=[
                    {"tensor": "model.layers.1.mlp.down_proj.weight", "index": [2070, 7310]}
                ]
            ),
            "at /models/12/super_weights/0/provenance/disputed_with: a coordinate cannot dispute itself",
        ),
        (
            lambda d: d["models"][0]["super_weights"][0].update(state="retracted"),
            "at /models/0/super_weights/0/provenance: 'retraction_reason' is a required property",
        ),
        (
            lambda d: d["models"][10].update(created_at="2026-02-30T00:00:00Z"),
            "at /models/10/created_at: not an ISO 8601 time: '2026-02-30T00:00:00Z'",
        ),
        (
            lambda d: d["models"][10]["super_weights"][0]["provenance"].update(
                retracted_at="2026-01-01T24:00:00Z"
            ),
            "at /models/10/super_weights/0/provenance/retracted_at: not an ISO 8601 time",
        ),
    ],
)
def test_invalid_import_writes_nothing_and_says_where(db_sessions, tmp_path, mutate, message):
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    # The broken entry comes last in the file: nothing before it may be written either.
    mutate(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidInput) as info:
        _import(db_sessions, index_service.load_file(path))
    line = str(info.value)
    assert "\n" not in line and message in line, line
    assert line.startswith(f"invalid {path}: at /")
    assert _counts(db_sessions) == (0, 0)


# The database refuses one coordinate (a trigger standing in for any failure of the database
# half-way through an import: a constraint, a full disk, a lost connection).
REFUSED_INDEX = [9999, 9999]
REFUSE_TRIGGER = {
    "sqlite": [
        (
            "CREATE TRIGGER refuse_one BEFORE INSERT ON super_weights "
            "WHEN NEW.index_key = '9999,9999' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )
    ],
    "postgresql": [
        (
            "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN "
            "IF NEW.index_key = '9999,9999' THEN RAISE EXCEPTION 'refused by the test trigger'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        ),
        (
            "CREATE TRIGGER refuse_one BEFORE INSERT ON super_weights "
            "FOR EACH ROW EXECUTE FUNCTION refuse_one()"
        ),
    ],
}


def _rows(sessions) -> dict[str, list[tuple]]:
    """Every row of the registry's tables, in id order."""
    with sessions() as session:
        return {
            model.__tablename__: [
                tuple(getattr(row, c.key) for c in model.__mapper__.columns)
                for row in session.scalars(select(model).order_by(model.id))
            ]
            for model in (ModelRevision, SuperWeight)
        }


def test_an_import_failing_on_its_last_model_leaves_the_database_as_before(
    db_sessions, cli_env, report, tmp_path
):
    _fill(db_sessions, report)
    before, before_rows = _export(db_sessions), _rows(db_sessions)
    document = json.loads(before)
    # Every kind of write before the failure: existing coordinates updated, a revision and its
    # coordinates created...
    for model in document["models"]:
        for sw in model["super_weights"]:
            sw["evidence"] = {**sw["evidence"], "note": "changed by the import"}
    new = copy.deepcopy(next(m for m in document["models"] if m["revision"] == SHA_A))
    first_new = dict(new, model_id="acme/new-model")
    # ...and last, a model whose last coordinate the database refuses.
    last = copy.deepcopy(first_new)
    last["model_id"] = "zz/refused-last"
    refused = copy.deepcopy(last["super_weights"][-1])
    refused.update(index=REFUSED_INDEX, row=REFUSED_INDEX[0], col=REFUSED_INDEX[1])
    last["super_weights"].append(refused)
    document["models"] += [first_new, last]
    index_service.validate_document(document)  # a valid document: it fails only when written

    dialect = db_sessions.kw["bind"].dialect.name
    with db_sessions() as session, session.begin():
        for statement in REFUSE_TRIGGER[dialect]:
            session.connection().exec_driver_sql(statement)
    path = tmp_path / "index.json"
    path.write_text(index_service.dumps(document))
    result = CliRunner().invoke(main, ["import", str(path)])
    assert result.exit_code != 0
    assert "refused by the test trigger" in str(result.exception)

    assert _rows(db_sessions) == before_rows
    assert _export(db_sessions) == before


def test_not_json_is_one_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"meta": ')
    with pytest.raises(InvalidInput, match=r"not JSON: .* at line 1 column 10$"):
        index_service.load_file(path)
    with pytest.raises(InvalidInput, match="no such file"):
        index_service.load_file(tmp_path / "missing.json")


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------

# Times no import could take from its own clock.
PAST = "2020-01-02T03:04:05Z"
LATER = "2021-06-07T08:09:10Z"


def _published_with_times() -> dict:
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    model = document["models"][0]
    model.update(created_at=PAST, updated_at=LATER)
    model["super_weights"][0]["provenance"].update(created_at=PAST, updated_at=LATER)
    return document


def test_an_import_keeps_everything_the_document_says(db_sessions):
    document = _published_with_times()
    _import(db_sessions, document)
    exported = json.loads(_export(db_sessions))
    model = exported["models"][0]
    assert (model["created_at"], model["updated_at"]) == (PAST, LATER)
    provenance = model["super_weights"][0]["provenance"]
    assert (provenance["created_at"], provenance["updated_at"]) == (PAST, LATER)
    # And everything else the document states, as it states it (the export also writes the
    # fields the document left out, with their defaults).
    assert _as_stated(exported["models"], document["models"]) == document["models"]


def _as_stated(exported, stated):
    """`exported` cut down to the keys `stated` has, at every level."""
    if isinstance(stated, dict) and isinstance(exported, dict):
        return {k: _as_stated(exported.get(k), v) for k, v in stated.items()}
    if isinstance(stated, list) and isinstance(exported, list) and len(stated) == len(exported):
        return [_as_stated(e, s) for e, s in zip(exported, stated, strict=True)]
    return exported


def test_a_second_claim_of_a_coordinate_is_merged_with_the_first(db_sessions):
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    _import(db_sessions, document)
    before = json.loads(_export(db_sessions))
    model = before["models"][0]
    first = model["super_weights"][0]
    second = copy.deepcopy(document)
    claim = next(
        sw
        for m in second["models"]
        if (m["model_id"], m["revision"]) == (model["model_id"], model["revision"])
        for sw in m["super_weights"]
        if (sw["tensor"], sw["index"]) == (first["tensor"], first["index"])
    )
    new_source = {
        "citation": "Another lab. Super weights again (2026)",
        "locator": "Table 1",
        "statement": f"{first['tensor']} {first['index']}",
        "url": "https://example.org/again",
    }
    new_place = {"index": [1, 2], "tensor": "model.layers.9.mlp.down_proj.weight"}
    claim["provenance"] = {
        "citation": "Another lab. Super weights again (2026)",
        "sources": [new_source],
        "disputed_with": [new_place],
        "reproduced_in": [SHA],
    }
    stats = _import(db_sessions, second)
    assert stats.coordinates["updated"] == 1
    after = json.loads(_export(db_sessions))
    merged = next(
        sw
        for m in after["models"]
        if (m["model_id"], m["revision"]) == (model["model_id"], model["revision"])
        for sw in m["super_weights"]
        if (sw["tensor"], sw["index"]) == (first["tensor"], first["index"])
    )["provenance"]
    old = first["provenance"]
    assert merged["citation"] == old["citation"]  # the first citation stays
    assert new_source in merged["sources"] and all(s in merged["sources"] for s in old["sources"])
    assert len(merged["sources"]) == len(old["sources"]) + 1
    assert new_place in merged["disputed_with"]
    assert all(p in merged["disputed_with"] for p in old["disputed_with"])
    assert merged["reproduced_in"] == [SHA]


def test_import_stats_say_what_changed():
    stats = index_service.ImportStats(revisions=2)
    stats.coordinates.update(created=3, updated=2, unchanged=1)
    assert stats.summary() == "2 model revisions, 6 coordinates (3 new, 2 updated, 1 unchanged)"


def test_the_import_counts_revisions(db_sessions):
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    assert _import(db_sessions, document).revisions == MODELS


def test_the_canonical_text_sorts_keys_keeps_unicode_and_refuses_nan():
    assert index_service.dumps({"b": 1, "a": "é"}) == '{\n  "a": "é",\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        index_service.dumps({"a": float("nan")})


def test_an_error_points_at_its_place_by_rfc_6901_and_fits_one_line():
    assert index_document._pointer(["models", 0, "a/b~c"]) == "/models/0/a~1b~0c"
    assert index_document._pointer([]) == "/"
    exact = "x" * 200
    assert index_document._one_line(exact) == exact
    assert index_document._one_line("y" * 201) == "y" * 199 + "…"
    assert index_document._one_line("a \n b") == "a b"


def test_an_impossible_time_is_refused_with_its_place(db_sessions):
    for place in ("meta", "model", "coordinate"):
        document = _published_with_times()
        if place == "meta":
            document["meta"]["generated_at"] = "2026-02-30T00:00:00Z"
            pointer = "/meta/generated_at"
        elif place == "model":
            document["models"][0]["updated_at"] = "2026-02-30T00:00:00Z"
            pointer = "/models/0/updated_at"
        else:
            document["models"][0]["super_weights"][0]["provenance"]["created_at"] = (
                "2026-02-30T00:00:00Z"
            )
            pointer = "/models/0/super_weights/0/provenance/created_at"
        with pytest.raises(InvalidInput, match=f"^invalid index: at {pointer}: "):
            index_service.validate_document(document)


def test_an_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"caf\xe9": 1}')
    with pytest.raises(InvalidInput) as caught:
        index_service.load_file(path)
    message = str(caught.value)
    assert message.startswith(f"cannot read {path}: ") and "codec" in message


def _document(*coordinates: dict, **model_fields) -> dict:
    meta = index_service.load_file(PUBLISHED_INDEX_PATH)["meta"]
    model = {"model_id": "org/x", "revision": SHA, "revision_kind": "commit", **model_fields}
    model["super_weights"] = list(coordinates)
    return {"meta": meta, "models": [model]}


def _coordinate(state: str, **provenance) -> dict:
    coordinate = {
        "tensor": "model.layers.1.mlp.down_proj.weight",
        "index": [3, 4],
        "layer": 1,
        "module": "mlp.down_proj",
        "row": 3,
        "col": 4,
        "value": -1.5,
        "dtype": "float32",
        "state": state,
    }
    if provenance:
        coordinate["provenance"] = provenance
    return coordinate


def test_what_a_document_leaves_out_is_imported_as_empty(db_sessions):
    _import(db_sessions, _document(_coordinate("reported")))
    (model,) = json.loads(_export(db_sessions))["models"]
    assert model["weight_files"] == []
    (coordinate,) = model["super_weights"]
    assert coordinate["evidence"] == {}
    provenance = coordinate["provenance"]
    assert (provenance["sources"], provenance["disputed_with"], provenance["citation"]) == (
        [],
        [],
        None,
    )


def test_merged_claims_keep_the_stronger_state_and_everything_both_say(db_sessions):
    def source(name):
        return {"citation": name, "url": f"https://example.org/{name}"}

    def place(layer):
        return {"index": [1, 2], "tensor": f"model.layers.{layer}.mlp.down_proj.weight"}

    first = _coordinate(
        "reported", sources=[source("a")], disputed_with=[place(7)], reproduced_in=[SHA_A]
    )
    second = _coordinate(
        "published",
        citation="The authors",
        sources=[source("b")],
        disputed_with=[place(8)],
        reproduced_in=[SHA],
    )
    _import(db_sessions, _document(first))
    _import(db_sessions, _document(second))
    _import(db_sessions, _document(_coordinate("reported", sources=[source("c")])))
    (model,) = json.loads(_export(db_sessions))["models"]
    (coordinate,) = model["super_weights"]
    provenance = coordinate["provenance"]
    assert coordinate["state"] == "published"  # a later "reported" does not weaken it
    assert provenance["citation"] == "The authors"  # the first citation there was
    assert sorted(s["citation"] for s in provenance["sources"]) == ["a", "b", "c"]
    assert provenance["disputed_with"] == [place(7), place(8)]
    assert provenance["reproduced_in"] == sorted([SHA, SHA_A])


def test_an_export_is_dated_by_the_last_change(db_sessions):
    with transaction(db_sessions) as session:
        empty = index_service.export_document(session)
    assert empty["meta"]["generated_at"] == "1970-01-01T00:00:00Z"
    _import(db_sessions, _published_with_times())
    with transaction(db_sessions) as session:
        filled = index_service.export_document(session)
    assert filled["meta"]["generated_at"] > "2020"


def test_an_impossible_coordinate_update_time_is_refused_with_its_place():
    document = _published_with_times()
    document["models"][0]["super_weights"][0]["provenance"]["updated_at"] = "2026-02-30T00:00:00Z"
    pointer = "/models/0/super_weights/0/provenance/updated_at"
    with pytest.raises(InvalidInput, match=f"^invalid index: at {pointer}: "):
        index_service.validate_document(document)


def test_a_quantization_check_is_imported_and_kept_by_a_document_without_one(db_sessions):
    check = {"bits": 4, "perplexity": {"kept": 10.5, "quantized": 11.0}}
    _import(db_sessions, _document(_coordinate("reported"), quantization_check=check))
    _import(db_sessions, _document(_coordinate("reported")))
    (model,) = json.loads(_export(db_sessions))["models"]
    assert model["quantization_check"] == check
