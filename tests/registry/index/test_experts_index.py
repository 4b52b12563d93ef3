"""The JSON index, schema version 2: coordinates with their routed expert (any rank), super
experts, the per-expert profile; version-1 documents still valid and importable."""

import copy
import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator

from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import service as index_service
from registry.superweights import service
from tests.expert_reports import FUSED_TENSOR, moe_report
from tests.helpers import SHA_A, other_database
from workers.contract.resources import PUBLISHED_INDEX_PATH

PINNED = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = "acme/tiny-moe"


def _export(sessions) -> str:
    with transaction(sessions) as session:
        return index_service.dumps(index_service.export_document(session, generated_at=PINNED))


def _import(sessions, document):
    with transaction(sessions) as session:
        return index_service.import_document(session, document)


def _record(sessions, report, model_id=MODEL):
    with transaction(sessions) as session:
        service.record_report(
            session, model_id=model_id, revision=SHA_A, revision_kind="commit", report=report
        )


def test_export_is_version_2_with_experts_and_validates(db_sessions):
    _record(db_sessions, moe_report())
    document = json.loads(_export(db_sessions))
    Draft202012Validator(index_service.schema()).validate(document)
    assert document["meta"]["schema_version"] == 2
    (model,) = document["models"]
    fused = next(sw for sw in model["super_weights"] if sw["tensor"] == FUSED_TENSOR)
    assert (fused["index"], fused["expert"]) == ([2, 7, 5], 2)
    assert [(se["layer"], se["expert"], se["state"]) for se in model["super_experts"]] == [
        (1, 2, "verified"),
        (3, 0, "rejected"),
    ]
    assert model["super_experts"][1]["max_abs_output"] == "Infinity"
    assert model["super_experts"][0]["evidence"]["validation"]["pruned"]["perplexity"] == 250.0
    assert model["profile"]["experts"][1]["experts"][2]["max_abs_output"] == 400.0


def test_round_trip_with_experts_is_byte_identical(db_sessions, request, tmp_path):
    """export -> import into an empty database -> export gives the same bytes; the 3-index
    coordinate, the super experts (an infinite maximum included) and the profile survive."""
    _record(db_sessions, moe_report())
    _import(db_sessions, index_service.load_file(PUBLISHED_INDEX_PATH))
    first = _export(db_sessions)
    with other_database(db_sessions, request, tmp_path) as other:
        stats = _import(other, json.loads(first))
        assert stats.super_experts["created"] == 2
        assert _export(other) == first
        with other() as session:
            sw = service.get_coordinate(session, MODEL, SHA_A, FUSED_TENSOR, [2, 7, 5])
            assert (sw.expert, sw.index) == (2, [2, 7, 5])


def test_coordinates_are_sorted_by_layer_and_expert_as_numbers(db_sessions):
    report = moe_report(num_layers=12)
    base = report["super_weights"][0]
    report["super_weights"] = [
        dict(
            base,
            tensor=f"model.layers.{layer}.mlp.experts.{expert}.down_proj.weight",
            index=[5, 7],
            layer=layer,
            expert=expert,
        )
        for layer, expert in ((10, 2), (2, 10), (2, 3), (1, 2))
    ] + [
        dict(
            base,
            tensor="model.layers.2.mlp.shared_expert.down_proj.weight",
            index=[5, 7],
            layer=2,
            module="mlp.shared_expert.down_proj",
            expert=None,
        )
    ]
    _record(db_sessions, report)
    (model,) = json.loads(_export(db_sessions))["models"]
    assert [(sw["layer"], sw["expert"]) for sw in model["super_weights"]] == [
        (1, 2),
        (2, None),
        (2, 3),
        (2, 10),
        (10, 2),
    ]


def test_a_version_1_document_still_validates_and_imports(db_sessions):
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    assert document["meta"]["schema_version"] == 1
    stats = _import(db_sessions, document)
    assert stats.coordinates["created"] > 0 and sum(stats.super_experts.values()) == 0
    exported = json.loads(_export(db_sessions))
    assert exported["meta"]["schema_version"] == 2
    assert all(sw["expert"] is None for m in exported["models"] for sw in m["super_weights"])
    assert all(m["super_experts"] == [] for m in exported["models"])


def test_a_version_1_document_leaves_recorded_experts_alone(db_sessions):
    """A version-1 document knows no experts: importing it does not erase a coordinate's expert."""
    _record(db_sessions, moe_report())
    document = json.loads(_export(db_sessions))
    document["meta"]["schema_version"] = 1
    for model in document["models"]:
        del model["super_experts"]
        for sw in model["super_weights"]:
            del sw["expert"]
    _import(db_sessions, document)
    with db_sessions() as session:
        assert service.get_coordinate(session, MODEL, SHA_A, FUSED_TENSOR, [2, 7, 5]).expert == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["meta"].update(schema_version=1),
            "at /models/0/super_experts: schema version 1 has no super_experts",
        ),
        (
            lambda d: (d["meta"].update(schema_version=1), d["models"][0].pop("super_experts")),
            "at /models/0/super_weights/0/expert: schema version 1 has no expert",
        ),
        (
            lambda d: d["meta"].update(schema_version=3),
            "at /meta/schema_version: 3 is not one of [1, 2]",
        ),
        (
            lambda d: d["models"][0]["super_experts"].append(
                copy.deepcopy(d["models"][0]["super_experts"][0])
            ),
            "at /models/0/super_experts/2: expert 2 of layer 1 appears twice",
        ),
        (
            lambda d: d["models"][0]["super_experts"][0]["provenance"].update(
                disputed_with=[{"layer": 1, "expert": 2}]
            ),
            "at /models/0/super_experts/0/provenance/disputed_with: a super expert cannot dispute itself",
        ),
        (
            lambda d: d["models"][0]["super_experts"][0]["provenance"].update(
                disputed_with=[{"tensor": "x", "index": [1]}]
            ),
            "at /models/0/super_experts/0/provenance/disputed_with/0",
        ),
        (
            lambda d: d["models"][0]["super_experts"][0].update(state="retracted"),
            "at /models/0/super_experts/0/provenance/retraction_reason: None is not of type 'string'",
        ),
        (
            lambda d: d["models"][0]["super_weights"][0].update(expert=-1),
            "at /models/0/super_weights/0/expert",
        ),
        (
            lambda d: d["models"][0]["super_experts"][0].update(max_abs_output="huge"),
            "at /models/0/super_experts/0/max_abs_output",
        ),
        (
            lambda d: d["models"][0]["profile"]["experts"][0]["experts"][0].pop("tokens"),
            "at /models/0/profile/experts/0/experts/0: 'tokens' is a required property",
        ),
        (
            lambda d: d["models"][0]["super_experts"][0]["provenance"].update(
                created_at="2026-02-30T00:00:00Z"
            ),
            "at /models/0/super_experts/0/provenance/created_at: not an ISO 8601 time",
        ),
    ],
)
def test_an_invalid_expert_document_writes_nothing_and_says_where(
    db_sessions, request, tmp_path, mutate, message
):
    _record(db_sessions, moe_report())
    document = json.loads(_export(db_sessions))
    mutate(document)
    with other_database(db_sessions, request, tmp_path) as other:
        with pytest.raises(InvalidInput) as info:
            _import(other, document)
        assert message in str(info.value)
        assert json.loads(_export(other))["models"] == []
