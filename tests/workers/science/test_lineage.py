"""The lineage check on tiny planted models: a base's verified super weights checked by ablation
in a fine-tune with detection's own validation. A fine-tune that keeps them (every other weight
moved) keeps them, with the ratio and interval of zeroing them there; one that shrank them has
lost them; a weight the fine-tune lacks where the base has it is absent; and what the
fine-tune's own detection already judged is taken from its report, not ablated again."""

import pytest

from tests.lineage import LOST_SCALE, base_coordinates, base_experts, fine_tune
from workers.contract.lineage import BaseCoordinate, LineageBase
from workers.fixtures.planted import build_planted_model
from workers.science.pipeline.lineage import ToCheck, check_lineage, lineage_check, routed_experts
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


def test_the_base_has_two_verified_super_weights(models):
    base, coordinates = models["base"], base_coordinates(models["report"])
    assert [tuple(c.index) for c in coordinates] == sorted(
        base.stored_index(p) for p in base.plants
    )


def test_a_fine_tune_that_keeps_them_keeps_them_by_ablation(models):
    coordinates = base_coordinates(models["report"])
    checked = lineage_check(models["kept"], ToCheck(coordinates)).coordinates
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
    coordinates = base_coordinates(models["report"])
    checked = lineage_check(models["lost"], ToCheck(coordinates)).coordinates
    assert [c.outcome for c in checked] == ["lost", "lost"]
    for c, base in zip(checked, coordinates, strict=True):
        assert c.checked_by == "lineage" and c.value == pytest.approx(base.value * LOST_SCALE)
        assert c.interval is not None and c.interval.high < MIN_PERPLEXITY_RATIO
        assert "multiplies perplexity by only" in c.reason


def test_a_weight_the_fine_tune_lacks_is_absent(models):
    kept = base_coordinates(models["report"])[0]
    where = kept.model_dump()
    missing = [
        BaseCoordinate(**{**where, "layer": 7, "tensor": "model.layers.7.mlp.down_proj.weight"}),
        BaseCoordinate(**{**where, "index": [kept.row, 9999], "col": 9999}),
        BaseCoordinate(**{**where, "tensor": "transformer.h.1.mlp.c_proj.weight"}),
    ]
    checked = lineage_check(models["kept"], ToCheck([*missing, kept])).coordinates
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
    coordinates = base_coordinates(models["report"])
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

    def ablate(rest: ToCheck):
        asked.append(rest.coordinates)
        assert rest.experts == []  # a dense base has none
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
    coordinates = base_coordinates(analyse(path, AnalysisOptions()))
    assert [c.expert for c in coordinates] == [1]
    (checked,) = lineage_check(path, ToCheck(coordinates)).coordinates
    assert (checked.outcome, checked.expert, checked.index) == ("kept", 1, coordinates[0].index)
    assert checked.value == coordinates[0].value


# --- a mixture-of-experts base's super experts -------------------------------------------------


@pytest.fixture(scope="module")
def moe(tmp_path_factory, one_thread):
    """A planted Qwen3-MoE (a super expert with a super weight inside it), its report, and a
    fine-tune that lost that super weight (so the expert no longer matters), with its report."""
    from tests.lineage import shrink_weight
    from workers.fixtures.planted_moe import build_planted_moe

    root = tmp_path_factory.mktemp("moe-lineage")
    planted = build_planted_moe("qwen3_moe", root / "base")
    report = analyse(planted.path, AnalysisOptions())
    (weight,) = [sw for sw in report.super_weights if sw.state == "verified"]
    lost = shrink_weight(planted.path, root / "lost", weight.tensor, weight.index)
    return {
        "planted": planted,
        "report": report,
        "lost": lost,
        "lost_report": analyse(lost, AnalysisOptions()),
    }


def test_a_super_expert_the_fine_tune_keeps_is_kept_by_pruning_it_there(moe):
    planted, report = moe["planted"], moe["report"]
    experts = base_experts(report)
    assert [(e.layer, e.expert) for e in experts] == [(planted.layer, planted.super_expert)]
    checked = lineage_check(planted.path, ToCheck([], experts, routed_experts(report)))
    assert checked.coordinates == []
    (e,) = checked.experts
    assert (e.layer, e.expert, e.outcome, e.checked_by) == (
        planted.layer,
        planted.super_expert,
        "kept",
        "lineage",
    )
    assert e.interval is not None and e.interval.low >= MIN_PERPLEXITY_RATIO
    assert e.validation is not None and e.validation.verdict.state == "verified"
    # Controlled by random experts the router used in that layer, pruned alike.
    pruned = {x for c in e.validation.controls.values() for x in c.experts}
    assert pruned and pruned <= set(planted.routed)
    assert e.base_ratio == experts[0].ratio


def test_a_super_expert_whose_super_weight_is_gone_is_lost(moe):
    experts = base_experts(moe["report"])
    # The fine-tune's own detection no longer finds the expert: the check prunes it itself.
    assert [x for x in moe["lost_report"].super_experts if x.state == "verified"] == []
    checked = lineage_check(moe["lost"], ToCheck([], experts, routed_experts(moe["lost_report"])))
    (e,) = checked.experts
    assert (e.outcome, e.checked_by) == ("lost", "lineage")
    assert e.interval is not None and e.interval.high < MIN_PERPLEXITY_RATIO


def test_a_super_expert_the_fine_tune_lacks_is_absent(moe):
    from workers.fixtures.planted_moe import TINY

    planted = moe["planted"]
    (expert,) = base_experts(moe["report"])
    layers = planted.config["num_hidden_layers"]
    missing = [
        expert.model_copy(update={"layer": 99}),
        expert.model_copy(update={"expert": 99}),
    ]
    checked = lineage_check(planted.path, ToCheck([], missing))
    assert [(e.outcome, e.checked_by, e.ratio) for e in checked.experts] == [
        ("absent", None, None),
        ("absent", None, None),
    ]
    assert [e.reason for e in checked.experts] == [
        f"the fine-tune has {layers} layers: no layer 99",
        f"layer {planted.layer} of the fine-tune has {TINY.num_experts} experts: no expert 99",
    ]


def test_a_super_expert_the_fine_tunes_detection_judged_is_not_pruned_again(moe):
    """The base's super weight and super expert, checked in the base's own weights (a fine-tune
    that changed nothing): its detection judged both, so nothing is handed to the ablation."""
    report = moe["report"]
    base = LineageBase(
        model_id="acme/moe",
        revision="a" * 40,
        coordinates=base_coordinates(report),
        super_experts=base_experts(report),
    )

    def ablate(rest: ToCheck):
        raise AssertionError(f"detection judged everything, not {rest}")

    check = check_lineage(report, base, ablate)
    assert [(c.outcome, c.checked_by) for c in check.coordinates] == [("kept", "detection")]
    assert check.super_experts is not None
    assert [(e.outcome, e.checked_by) for e in check.super_experts] == [("kept", "detection")]
    own = report.super_experts[0].evidence["validation"]
    assert check.super_experts[0].ratio == own["pruned"]["ratio"]
    assert check.count_experts("kept") == 1
    assert "super_experts" in check.as_json_dict()


def test_a_dense_bases_check_writes_no_super_experts(models):
    """A base without super experts: the stored check is what it was before super experts were
    checked (no `super_experts` key), so an index of dense models is unchanged."""
    report = models["report"]
    base = LineageBase(
        model_id="acme/base", revision="a" * 40, coordinates=base_coordinates(report)
    )
    check = check_lineage(report, base, lambda rest: pytest.fail(f"not judged: {rest}"))
    assert check.super_experts is None and "super_experts" not in check.as_json_dict()
