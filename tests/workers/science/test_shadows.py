"""Shadow rows (several rows fed by one input channel) are validated as one unit: a spike with no
super weight behind it is rejected by a single ablation; a verified group is split into its
members, each judged on its own. Sequential and exhaustive evaluations agree."""

import pytest
import torch

from workers.fixtures.planted import Plant, build_planted_model
from workers.fixtures.synthetic_llama import Decoy, build_synthetic_llama
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse

PLANT = Plant(layer=1, row=17, col=300, value=4.0)
DECOY = Decoy(layer=3, col=100, rows=tuple(range(40, 48)), value=3.0)


def _states(report) -> dict:
    return {(sw.layer, sw.row, sw.col): sw.state for sw in report.super_weights}


@pytest.fixture(scope="module")
def decoy_model(tmp_path_factory):
    return build_synthetic_llama(
        tmp_path_factory.mktemp("decoy"),
        hidden_size=256,
        intermediate_size=512,
        num_layers=6,
        num_heads=4,
        num_kv_heads=2,
        vocab_size=320,
        dtype=torch.bfloat16,
        plant=PLANT,
        decoy=DECOY,
    )


def test_a_spike_without_a_super_weight_is_rejected_by_one_ablation(decoy_model):
    report = analyse(decoy_model.path)
    states = _states(report)
    assert states.pop((PLANT.layer, PLANT.row, PLANT.col)) == "verified"
    assert states == {(DECOY.layer, row, DECOY.col): "rejected" for row in DECOY.rows}
    # 2 units (the plant, the decoy's 8 rows), the controls of 2 tensors, the plant's restore.
    assert report.validation.variants == 2 + 2 * 2 + 1
    decoys = [sw for sw in report.super_weights if sw.layer == DECOY.layer]
    for sw in decoys:
        validation = sw.evidence.validation
        assert len(validation.zeroed_with) == len(DECOY.rows) - 1
        assert [sw.row, sw.col] not in validation.zeroed_with
        assert validation.restored is None  # nothing moved, nothing to restore
        assert "other rows its input channel" in validation.verdict.reason
    assert {sw.evidence.selection.rank for sw in decoys} == {1}
    exhaustive = analyse(decoy_model.path, AnalysisOptions(sequential=False))
    assert _states(exhaustive) == _states(report)


def test_a_verified_shadow_group_is_split_into_its_members(tmp_path):
    # Two super weights on one input channel, in two rows (as Llama-3-8B's three share one).
    plants = [Plant(1, 10, 77, 4.5), Plant(1, 30, 77, 4.0)]
    planted = build_planted_model("llama", tmp_path / "shared", plants=plants)
    report = analyse(planted.path)
    assert _states(report) == {(p.layer, p.row, p.col): "verified" for p in plants}
    # The group, each member alone, each member's restore, and the 2 controls.
    assert report.validation.variants == 1 + 2 + 2 + 2
    for sw in report.super_weights:
        assert sw.evidence.validation.zeroed_with == []  # judged on its own
        assert sw.evidence.validation.restored is not None
