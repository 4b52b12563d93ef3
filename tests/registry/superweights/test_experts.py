"""Recording a mixture-of-experts report: coordinates of any rank with their routed expert, super
experts with their evidence, and the per-expert profile, in the caller's one transaction."""

import math

import pytest
from sqlalchemy import func, select

from registry.data_version import current_version
from registry.database import transaction
from registry.errors import InvalidInput
from registry.index import service as index_service
from registry.superweights import service
from registry.superweights.models import SuperExpert, SuperWeight
from tests.expert_reports import FUSED_TENSOR, moe_report
from tests.helpers import SHA_A

MODEL = "acme/tiny-moe"


def _record(sessions, report, model_id=MODEL, revision=SHA_A):
    with transaction(sessions) as session:
        service.record_report(
            session, model_id=model_id, revision=revision, revision_kind="commit", report=report
        )


def _super_experts(sessions) -> dict[tuple[int, int], SuperExpert]:
    with sessions() as session:
        return {(se.layer, se.expert): se for se in session.scalars(select(SuperExpert))}


def test_a_moe_report_is_recorded_with_experts_super_experts_and_profile(db_sessions):
    _record(db_sessions, moe_report())
    with db_sessions() as session:
        rev = service.get_revision(session, MODEL, SHA_A)
        fused = service.find_coordinate(rev, FUSED_TENSOR, [2, 7, 5])
        assert (fused.expert, fused.index, fused.index_key, fused.row, fused.col) == (
            2,
            [2, 7, 5],
            "2,7,5",
            5,
            7,
        )
        assert fused.state == "verified"
        per_expert = next(
            sw for sw in rev.super_weights if sw.tensor.endswith("experts.1.down_proj.weight")
        )
        assert (per_expert.expert, per_expert.index) == (1, [5, 6])
        experts = rev.profile["experts"]
        assert [p["layer"] for p in experts] == [0, 1, 2, 3]
        assert experts[1]["experts"][2]["max_abs_output"] == 400.0
        assert experts[2]["experts"][3]["tokens"] == 0
    found = _super_experts(db_sessions)
    assert set(found) == {(1, 2), (3, 0)}
    verified = found[(1, 2)]
    assert (
        verified.state,
        verified.module,
        verified.max_abs_output,
        verified.row,
        verified.tokens_routed,
    ) == ("verified", "mlp.experts", 400.0, 5, 9)
    assert verified.evidence["validation"]["pruned"]["perplexity"] == 250.0
    assert verified.evidence["validation"]["verdict"]["state"] == "verified"
    assert verified.detector_version == "0.1.0"
    assert math.isinf(found[(3, 0)].max_abs_output)


def test_a_dense_report_stores_no_expert_profile(db_sessions, report):
    _record(db_sessions, report, model_id="org/dense")
    with db_sessions() as session:
        rev = service.get_revision(session, "org/dense", SHA_A)
        assert "experts" not in rev.profile
        assert all(sw.expert is None for sw in rev.super_weights)
        assert rev.super_experts == []


def test_recording_twice_changes_nothing_and_bumps_the_version_once(db_sessions):
    with db_sessions() as session:
        before = current_version(session)
    _record(db_sessions, moe_report())
    with db_sessions() as session:
        after_first = current_version(session)
        stamps = {
            (se.layer, se.expert): se.updated_at for se in session.scalars(select(SuperExpert))
        }
    assert after_first > before
    _record(db_sessions, moe_report())
    with db_sessions() as session:
        assert current_version(session) == after_first
        assert session.scalar(select(func.count()).select_from(SuperExpert)) == 2
        assert session.scalar(select(func.count()).select_from(SuperWeight)) == 2
        assert {
            (se.layer, se.expert): se.updated_at for se in session.scalars(select(SuperExpert))
        } == stamps


def test_a_changed_super_expert_is_updated_in_place(db_sessions):
    _record(db_sessions, moe_report())
    report = moe_report()
    report["super_experts"][0]["state"] = "rejected"
    _record(db_sessions, report)
    found = _super_experts(db_sessions)
    assert len(found) == 2 and found[(1, 2)].state == "rejected"


def test_a_retracted_super_expert_stays_retracted(db_sessions):
    _record(db_sessions, moe_report())
    with transaction(db_sessions) as session:
        se = service.get_super_expert(session, MODEL, SHA_A, 1, 2)
        service.retract(session, se, "the spike comes from a broken tokenizer")
    _record(db_sessions, moe_report())
    se = _super_experts(db_sessions)[(1, 2)]
    assert se.state == "retracted"
    assert se.retraction_reason == "the spike comes from a broken tokenizer"
    assert se.retracted_at is not None


def test_a_report_naming_a_super_expert_twice_writes_nothing(db_sessions):
    report = moe_report()
    report["super_experts"].append(dict(report["super_experts"][0]))
    with pytest.raises(InvalidInput, match="lists super expert 2 of layer 1 twice"):
        _record(db_sessions, report)
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(SuperExpert)) == 0
        assert session.scalar(select(func.count()).select_from(SuperWeight)) == 0


def test_a_three_index_coordinate_is_unique_by_its_whole_index(db_sessions):
    report = moe_report()
    twin = dict(report["super_weights"][0], index=[3, 7, 5], expert=3)
    report["super_weights"].append(twin)
    _record(db_sessions, report)
    with db_sessions() as session:
        keys = sorted(
            session.scalars(select(SuperWeight.index_key).where(SuperWeight.tensor == FUSED_TENSOR))
        )
    assert keys == ["2,7,5", "3,7,5"]
    report["super_weights"].append(dict(twin))
    with pytest.raises(
        InvalidInput, match=r"lists model.layers.1.mlp.experts.down_proj \[3, 7, 5\] twice"
    ):
        _record(db_sessions, report)


def test_a_verified_super_expert_reproduces_a_reported_one(db_sessions):
    document = {
        "meta": {
            "schema_version": 2,
            "generated_at": "2026-01-01T00:00:00Z",
            "generator": {"name": "t", "version": "1"},
        },
        "models": [
            {
                "model_id": MODEL,
                "revision": "unknown",
                "revision_kind": "unknown",
                "super_weights": [],
                "super_experts": [
                    {
                        "layer": 1,
                        "expert": 2,
                        "module": "mlp.experts",
                        "state": "reported",
                        "provenance": {
                            "citation": "Su et al.",
                            "sources": [{"citation": "Su et al.", "locator": "Table 2"}],
                        },
                    }
                ],
            }
        ],
    }
    with transaction(db_sessions) as session:
        index_service.import_document(session, document)
    _record(db_sessions, moe_report())
    with db_sessions() as session:
        claim = service.get_super_expert(session, MODEL, "unknown", 1, 2)
        assert claim.state == "reported"
        assert claim.reproduced_in == [SHA_A]


def test_lookup_prints_the_expert_column_and_the_super_experts(cli_env, db_sessions):
    from click.testing import CliRunner

    from registry.cli import main
    from workers.contract.resources import REPORTED_SUPER_EXPERTS_PATH

    _record(db_sessions, moe_report())
    result = CliRunner().invoke(main, ["lookup", MODEL], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    header, *rows = [line.split() for line in result.stdout.splitlines()[1:4]]
    assert header[:3] == ["state", "layer", "expert"]
    assert ["verified", "1", "2", FUSED_TENSOR, "[2, 7, 5]"] == [
        *rows[0][:4],
        " ".join(rows[0][4:7]),
    ]
    assert "  super experts:" in result.stdout
    assert any(
        line.split()[:4] == ["verified", "1", "2", "mlp.experts"]
        for line in result.stdout.splitlines()
    )
    CliRunner().invoke(main, ["import", str(REPORTED_SUPER_EXPERTS_PATH)], catch_exceptions=False)
    claims = (
        CliRunner()
        .invoke(main, ["lookup", "deepseek-ai/DeepSeek-V2-Lite"], catch_exceptions=False)
        .stdout
    )
    assert "reported (disputed)  3      54      mlp.experts" in claims
