"""record_report / retract against real databases."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from registry.database import transaction
from registry.errors import InvalidInput
from registry.superweights import service
from registry.superweights.models import ModelRevision, SuperWeight
from tests.helpers import CONTENT, SHA, SHA_A, coordinate

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _count(sessions, model=SuperWeight) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def _record(sessions, report, revision=SHA_A, kind="commit", model_id=MODEL):
    with transaction(sessions) as session:
        return service.record_report(
            session, model_id=model_id, revision=revision, revision_kind=kind, report=report
        )


def test_record_report_stores_revision_and_coordinates(db_sessions, report):
    _record(db_sessions, report)
    with db_sessions() as session:
        (rev,) = service.lookup(session, MODEL)
        assert (rev.revision, rev.revision_kind, rev.architecture, rev.dtype, rev.num_layers) == (
            SHA_A,
            "commit",
            "LlamaForCausalLM",
            "float32",
            30,
        )
        assert rev.weight_files[0]["name"] == "model.safetensors"
        coords = {sw.layer: sw for sw in rev.super_weights}
        sw = coords[11]
        assert (sw.tensor, sw.index, sw.row, sw.col, sw.value, sw.state) == (
            "model.layers.11.mlp.down_proj.weight",
            [507, 1229],
            507,
            1229,
            5.876,
            "verified",
        )
        assert sw.evidence["validation"]["ablated"]["perplexity"] == 378.6
        assert sw.detector_version == "0.1.0"
        assert coords[28].state == "rejected"


def test_record_report_is_idempotent(db_sessions, report):
    _record(db_sessions, report)
    with db_sessions() as session:
        (before,) = service.lookup(session, MODEL)
        stamps = {sw.index_key: sw.updated_at for sw in before.super_weights}
    _record(db_sessions, report)
    assert _count(db_sessions) == 2 and _count(db_sessions, ModelRevision) == 1
    with db_sessions() as session:
        (after,) = service.lookup(session, MODEL)
        assert {sw.index_key: sw.updated_at for sw in after.super_weights} == stamps


def test_rerecording_updates_in_place(db_sessions, report):
    _record(db_sessions, report)
    report["super_weights"][1]["state"] = "verified"
    report["model"]["dtype"] = "bfloat16"
    _record(db_sessions, report)
    assert _count(db_sessions) == 2
    with db_sessions() as session:
        (rev,) = service.lookup(session, MODEL)
        assert rev.dtype == "bfloat16"
        assert {sw.state for sw in rev.super_weights} == {"verified"}


def test_another_revision_is_another_entry(db_sessions, report):
    _record(db_sessions, report, revision=SHA_A)
    _record(db_sessions, report, revision=SHA)
    _record(db_sessions, report, revision=CONTENT, kind="content")
    assert _count(db_sessions, ModelRevision) == 3 and _count(db_sessions) == 6
    with db_sessions() as session:
        assert [r.revision for r in service.lookup(session, MODEL)] == sorted([SHA_A, SHA, CONTENT])
        assert [r.revision for r in service.lookup(session, MODEL, SHA)] == [SHA]


@pytest.mark.parametrize(
    ("revision", "kind", "message"),
    [
        ("main", "commit", "invalid revision 'main'"),
        ("A" * 40, "commit", "invalid revision"),
        (SHA_A, "content", "does not match revision"),
        ("unknown", "unknown", "needs an exact revision"),
    ],
)
def test_bad_revisions_are_refused(db_sessions, report, revision, kind, message):
    with pytest.raises(InvalidInput, match=message):
        _record(db_sessions, report, revision=revision, kind=kind)
    assert _count(db_sessions, ModelRevision) == 0


def test_invalid_report_writes_nothing(db_sessions, report):
    report["super_weights"][1]["state"] = "published"
    with pytest.raises(InvalidInput, match=r"/super_weights/1/state"):
        _record(db_sessions, report)
    assert _count(db_sessions, ModelRevision) == 0 and _count(db_sessions) == 0


def test_non_finite_evidence_is_stored_as_strict_json(db_sessions, report):
    validation = report["super_weights"][0]["evidence"]["validation"]
    validation["ablated"]["perplexity"] = float("inf")
    validation["controls"]["random"]["trace"] = [float("nan"), 1.0]
    _record(db_sessions, report)
    with db_sessions() as session:
        sw = service.get_coordinate(
            session, MODEL, SHA_A, "model.layers.11.mlp.down_proj.weight", [507, 1229]
        )
        assert sw.evidence["validation"]["ablated"]["perplexity"] == "Infinity"
        assert sw.evidence["validation"]["controls"]["random"]["trace"] == ["NaN", 1.0]


def test_retract_keeps_the_row_and_survives_a_rerun(db_sessions, report):
    _record(db_sessions, report)
    tensor = "model.layers.11.mlp.down_proj.weight"
    with transaction(db_sessions) as session:
        sw = service.get_coordinate(session, MODEL, SHA_A, tensor, [507, 1229])
        service.retract(session, sw, "wrong tensor name in the report")
    _record(db_sessions, report)  # a rerun does not undo a person's retraction
    assert _count(db_sessions) == 2
    with db_sessions() as session:
        sw = service.get_coordinate(session, MODEL, SHA_A, tensor, [507, 1229])
        assert sw.state == "retracted"
        assert sw.retraction_reason == "wrong tensor name in the report"
        assert sw.retracted_at is not None
        assert sw.value == 5.876
    with transaction(db_sessions) as session, pytest.raises(InvalidInput, match="needs a reason"):
        service.retract(
            session, service.get_coordinate(session, MODEL, SHA_A, tensor, [507, 1229]), " "
        )


def test_verifying_a_published_coordinate_marks_it_reproduced(db_sessions, published, report):
    model = "huggyllama/llama-7b"
    report["super_weights"] = [
        dict(
            coordinate(2, 3968, 7003, -2.1875, "verified", ablated=2000.0, baseline=5.68),
            dtype="float16",
        )
    ]
    _record(db_sessions, report, model_id=model, revision=SHA)
    _record(db_sessions, report, model_id=model, revision=SHA)  # still listed once
    with db_sessions() as session:
        sw = service.get_coordinate(
            session, model, "unknown", "model.layers.2.mlp.down_proj.weight", [3968, 7003]
        )
        assert sw.state == "published"
        assert sw.reproduced_in == [SHA]
        assert sw.citation.startswith("Yu, Wang, Shan, Reed, Wan.")


def test_database_refuses_duplicate_coordinates(db_sessions, report):
    _record(db_sessions, report)
    with pytest.raises(IntegrityError), transaction(db_sessions) as session:
        rev = session.scalar(select(ModelRevision))
        session.add(
            SuperWeight(
                revision_id=rev.id,
                tensor="model.layers.11.mlp.down_proj.weight",
                index=[507, 1229],
                index_key="507,1229",
                layer=11,
                module="mlp.down_proj",
                row=507,
                col=1229,
                state="candidate",
                evidence={},
                reproduced_in=[],
            )
        )
    with pytest.raises(IntegrityError), transaction(db_sessions) as session:
        rev = session.scalar(select(ModelRevision))
        session.add(
            SuperWeight(
                revision_id=rev.id,
                tensor="t",
                index=[1, 2],
                index_key="1,2",
                layer=1,
                module="m",
                row=1,
                col=2,
                state="bogus",
                evidence={},
                reproduced_in=[],
            )
        )
