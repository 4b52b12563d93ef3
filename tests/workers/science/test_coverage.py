"""Coverage: every model type in the installed transformers' causal-LM mapping is analysed (a
tiny random model from its own config class runs through detection to a report; for a
mixture-of-experts type, every routed layer's experts profiled) or listed in
workers.fixtures.coverage with one reason. A new transformers release shows its new types here
first: a type in neither fails.

Detection only (no validation) for speed; two types also run validation."""

import pytest
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from workers.fixtures import coverage
from workers.fixtures.tiny import build_tiny_model, tiny_config
from workers.science import feed_forward as ff
from workers.science.errors import UnsupportedArchitecture
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_TYPES = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
# Types whose tiny model also runs validation (a dense model, a hybrid, mixtures of experts).
VALIDATED = {"llama", "qwen3_5_text", "qwen3_moe", "gpt_oss"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("coverage")
    return lambda model_type: build_tiny_model(model_type, root / model_type)


def test_the_lists_name_only_known_types():
    listed = set(coverage.EXCLUDED) | set(coverage.MIXTURE_OF_EXPERTS)
    assert listed <= set(ALL_TYPES), sorted(listed - set(ALL_TYPES))


@pytest.mark.parametrize("model_type", ALL_TYPES)
def test_every_causal_lm_type_is_analysed_or_listed(model_type, models):
    reason = coverage.EXCLUDED.get(model_type)
    if reason is not None:
        # The reason holds: the refusal says it, or the tiny model still cannot be analysed.
        if reason in (coverage.ENCODER, coverage.ENCODER_DECODER):
            with pytest.raises(UnsupportedArchitecture, match="is not decoder-only"):
                ff.discover(tiny_config(model_type))
        elif reason == coverage.NO_FEED_FORWARD:
            with pytest.raises(UnsupportedArchitecture, match="has no feed-forward block"):
                ff.discover(tiny_config(model_type))
        else:
            # Any failure keeps it listed: reading its structure, or else analysing it.
            with pytest.raises(Exception):  # noqa: B017, PT011
                ff.discover(tiny_config(model_type))
                analyse(models(model_type), AnalysisOptions(validate=False))
        return
    path = models(model_type)
    report = analyse(path, AnalysisOptions(validate=model_type in VALIDATED))
    found = report.feed_forward
    assert found is not None and found.found_by == "structure"
    assert report.model.num_layers >= 2
    # Every layer with a feed-forward block was observed, and only those.
    descriptor = ff.discover(tiny_config(model_type))
    assert [p.layer for p in report.profile] == descriptor.feed_forward_layers
    routed = descriptor.routed_layers
    assert bool(routed) == (model_type in coverage.MIXTURE_OF_EXPERTS), (
        f"{model_type}: routed experts in layers {routed}; MIXTURE_OF_EXPERTS must say so"
    )
    if routed:
        # Every routed layer's experts profiled on the prompts (some expert took every token).
        assert [p.layer for p in report.expert_profile] == routed
        assert all(sum(e.tokens for e in p.experts) > 0 for p in report.expert_profile)
        assert found.experts == descriptor.routed_site(routed[0]).module
    else:
        assert (
            found.module
            == next(descriptor.matrix_site(i) for i in descriptor.feed_forward_layers).module
        )
    if model_type in VALIDATED:
        assert report.eval is not None and report.validation is not None


def test_the_count(capsys):
    counts = coverage.counts(ALL_TYPES)
    with capsys.disabled():
        print(
            f"\ncoverage: {counts.analysed} analysed / {counts.eligible} decoder-only types with a "
            f"feed-forward block ({counts.other} left out for other reasons; "
            f"{len(set(coverage.MIXTURE_OF_EXPERTS) - set(coverage.EXCLUDED))} of those analysed are "
            f"mixture-of-experts); {counts.not_eligible} of "
            f"{counts.total} causal-LM types are not decoder-only or have no feed-forward block"
        )
    assert counts.analysed + counts.other == counts.eligible


def test_docs_list_every_excluded_type_with_its_reason():
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "coverage.md").read_text()
    assert coverage.markdown(ALL_TYPES) in text, (
        "docs/coverage.md is out of date: regenerate it with `python -m workers.fixtures.coverage`"
    )
