"""The lineage check on tiny planted models: a base's verified super weights checked by ablation
in a fine-tune with detection's own validation. A fine-tune that keeps them (every other weight
moved) keeps them, with the ratio and interval of zeroing them there; one that shrank them has
lost them; a weight the fine-tune lacks where the base has it is absent; and what the
fine-tune's own detection already judged is taken from its report, not ablated again."""

import pytest

from tests.lineage import LOST_SCALE, fine_tune
from workers.contract.lineage import BaseCoordinate, LineageBase
from workers.contract.report import Report
from workers.fixtures.planted import build_planted_model
from workers.science.pipeline.lineage import check_lineage, lineage_check
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse
from workers.science.validation.verdict import MIN_PERPLEXITY_RATIO

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread):
    """The base (two layers, two planted super weights in layer 1), its report, and its two
    fine-tunes: one that keeps the super weights, one that lost them."""
    root = tmp_path_factory.mktemp("lineage")
    base = build_planted_model("llama", root / "base", num_layers=2)
    return {
        "base": base,
        "report": analyse(base.path, AnalysisOptions()),
        "kept": fine_tune(base, root / "kept", keeps=True),
        "lost": fine_tune(base, root / "lost", keeps=False),
    }


def _coordinates(report: Report) -> list[BaseCoordinate]:
    """The report's verified coordinates as the registry hands them to the check."""
    found = []
    for sw in report.super_weights:
        if sw.state == "verified":
            assert sw.evidence.validation is not None  # verified by validation
            found.append(
                BaseCoordinate(
                    **sw.model_dump(
                        include={"tensor", "index", "layer", "module", "row", "col", "expert"}
                    ),
                    value=sw.value,
                    ratio=sw.evidence.validation.ablated.ratio,
                )
            )
    return found


def test_the_base_has_two_verified_super_weights(models):
    base, coordinates = models["base"], _coordinates(models["report"])
    assert [tuple(c.index) for c in coordinates] == sorted(
        base.stored_index(p) for p in base.plants
    )


def test_a_fine_tune_that_keeps_them_keeps_them_by_ablation(models):
    coordinates = _coordinates(models["report"])
    checked = lineage_check(models["kept"], coordinates)
    assert [c.outcome for c in checked] == ["kept", "kept"]
    for c, base in zip(checked, coordinates, strict=True):
        assert (c.tensor, c.index, c.checked_by) == (base.tensor, base.index, "lineage")
        assert c.value == base.value == c.base_value  # restored exactly in the fine-tune
        assert c.interval is not None and c.interval.low >= MIN_PERPLEXITY_RATIO
        assert c.ratio is not None and c.ratio >= c.interval.low
        assert c.validation is not None and c.validation.verdict.state == "verified"
        # Judged against its tensor's controls, as detection judges a candidate.
        assert set(c.validation.controls) == {"random", "top_k"}
        assert c.reason.startswith("zeroing it multiplies perplexity by")


def test_a_fine_tune_that_shrank_them_has_lost_them(models):
    coordinates = _coordinates(models["report"])
    checked = lineage_check(models["lost"], coordinates)
    assert [c.outcome for c in checked] == ["lost", "lost"]
    for c, base in zip(checked, coordinates, strict=True):
        assert c.checked_by == "lineage" and c.value == pytest.approx(base.value * LOST_SCALE)
        assert c.interval is not None and c.interval.high < MIN_PERPLEXITY_RATIO
        assert "multiplies perplexity by only" in c.reason


def test_a_weight_the_fine_tune_lacks_is_absent(models):
    kept = _coordinates(models["report"])[0]
    where = kept.model_dump()
    missing = [
        BaseCoordinate(**{**where, "layer": 7, "tensor": "model.layers.7.mlp.down_proj.weight"}),
        BaseCoordinate(**{**where, "index": [kept.row, 9999], "col": 9999}),
        BaseCoordinate(**{**where, "tensor": "transformer.h.1.mlp.c_proj.weight"}),
    ]
    checked = lineage_check(models["kept"], [*missing, kept])
    assert [c.outcome for c in checked] == ["absent", "absent", "absent", "kept"]
    assert [c.reason for c in checked[:3]] == [
        "the fine-tune has 2 layers: no layer 7",
        f"model.layers.1.mlp.down_proj.weight of the fine-tune has shape [64, 256]: no index "
        f"[{kept.row}, 9999]",
        "the fine-tune stores it in model.layers.1.mlp.down_proj.weight, not in "
        "transformer.h.1.mlp.c_proj.weight",
    ]
    assert all(c.checked_by is None and c.value is None and c.ratio is None for c in checked[:3])


def test_what_the_fine_tunes_detection_judged_is_not_ablated_again(models, tmp_path):
    """A fine-tune's own report decides the weights its detection judged; only the others are
    handed to the ablation, in the base's order."""
    coordinates = _coordinates(models["report"])
    extra = BaseCoordinate(
        **{
            **coordinates[0].model_dump(),
            "layer": 7,
            "tensor": "model.layers.7.mlp.down_proj.weight",
        }
    )
    base = LineageBase(model_id="acme/base", revision="a" * 40, coordinates=[extra, *coordinates])
    kept_report = analyse(models["kept"], AnalysisOptions())
    asked: list[list[BaseCoordinate]] = []

    def ablate(rest):
        asked.append(rest)
        return lineage_check(models["kept"], rest)

    check = check_lineage(kept_report, base, ablate)
    assert asked == [[extra]]
    assert [(c.outcome, c.checked_by) for c in check.coordinates] == [
        ("absent", None),
        ("kept", "detection"),
        ("kept", "detection"),
    ]
    by_detection = {(sw.tensor, tuple(sw.index)): sw for sw in kept_report.super_weights}
    for c in check.coordinates[1:]:
        own = by_detection[(c.tensor, tuple(c.index))]
        assert own.evidence.validation is not None
        assert c.ratio == own.evidence.validation.ablated.ratio and c.value == own.value
    assert (check.base_model, check.base_revision) == ("acme/base", "a" * 40)
    assert check.detector_version == kept_report.detector.version
    assert check.count("kept") == 2


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_a_weight_inside_a_routed_expert_is_checked_where_it_is_stored(family, tmp_path):
    """One 2-D tensor per expert (Qwen3-MoE) and one fused tensor of all experts (gpt-oss): the
    coordinate, found in the expert's matrix, is ablated there."""
    from workers.fixtures.planted_moe import build_planted_moe

    path = tmp_path / family
    build_planted_moe(family, path)
    coordinates = _coordinates(analyse(path, AnalysisOptions()))
    assert [c.expert for c in coordinates] == [1]
    (checked,) = lineage_check(path, coordinates)
    assert (checked.outcome, checked.expert, checked.index) == ("kept", 1, coordinates[0].index)
    assert checked.value == coordinates[0].value
