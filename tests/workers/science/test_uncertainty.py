"""Every verdict carries its uncertainty: a planted borderline weight (zeroing it multiplies
perplexity by the threshold) is neither verified nor rejected, in the sequential and in the
exhaustive evaluation; and the interval's coverage, checked by resampling evaluation windows of a
planted model, is at least what the method states."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from workers.fixtures.borderline import build_borderline_model
from workers.fixtures.tokenizer import build_byte_tokenizer
from workers.science.evaluation import (
    DEFAULT_EVAL_TOKENS,
    EVAL_WINDOW_TOKENS,
    EvalText,
    eval_windows,
)
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse
from workers.science.validation.statistics import ALPHA, interval, look_windows
from workers.science.validation.verdict import MIN_PERPLEXITY_RATIO

RESAMPLES = 400


@pytest.fixture(scope="module")
def text_ids():
    return build_byte_tokenizer()(EvalText.load().text)["input_ids"]


@pytest.fixture(scope="module")
def borderline(tmp_path_factory, text_ids):
    windows = eval_windows(text_ids, EVAL_WINDOW_TOKENS, DEFAULT_EVAL_TOKENS)
    return build_borderline_model(
        tmp_path_factory.mktemp("borderline"), windows, target_ratio=MIN_PERPLEXITY_RATIO
    )


@pytest.mark.parametrize("sequential", [True, False])
def test_a_borderline_weight_is_neither_verified_nor_rejected(borderline, sequential):
    report = analyse(borderline.path, AnalysisOptions(sequential=sequential))
    plant = borderline.plants[0]
    (sw,) = [
        sw
        for sw in report.super_weights
        if (sw.layer, sw.row, sw.col) == (plant.layer, plant.row, plant.col)
    ]
    validation = sw.evidence.validation
    assert sw.state == "candidate"
    assert "straddles x2.0" in validation.verdict.reason
    assert validation.ablated.interval.low < MIN_PERPLEXITY_RATIO < validation.ablated.interval.high
    # Borderline cases run to the whole budget.
    assert not validation.ablated.stopped_early
    assert validation.ablated.tokens == report.eval.tokens - report.eval.windows


def test_the_interval_covers_the_ratio_at_least_as_often_as_stated(borderline, text_ids):
    """The population: every 256-token window of the evaluation text (46 under the byte
    tokenizer), the borderline weight zeroed against the model as it is. Samples of four windows,
    looked at as the sequential evaluation does (after 1, 2 and 4); the share of samples in which
    any look's interval misses the whole text's ratio must stay below ALPHA."""
    windows = eval_windows(text_ids, EVAL_WINDOW_TOKENS, len(text_ids))
    model = AutoModelForCausalLM.from_pretrained(borderline.path, dtype=torch.float32).eval()
    plant = borderline.plants[0]
    down = model.get_submodule(borderline.down_proj_module(plant.layer))

    def nll() -> list[torch.Tensor]:
        with torch.no_grad():
            return [
                torch.nn.functional.cross_entropy(
                    model(input_ids=w).logits[0, :-1], w[0, 1:], reduction="none"
                )
                for w in windows
            ]

    intact = nll()
    with torch.no_grad():
        down.weight[plant.row, plant.col] = 0.0
    population = [a.double() - b.double() for a, b in zip(nll(), intact, strict=True)]
    truth = float(torch.cat(population).mean())
    looks = look_windows(4)
    generator = torch.Generator().manual_seed(2411)
    misses, informative = 0, 0
    for _ in range(RESAMPLES):
        sample = [
            population[i] for i in torch.randperm(len(population), generator=generator)[:4].tolist()
        ]
        intervals = [interval(sample[:n], len(looks)) for n in looks]
        misses += any(not (i.low <= truth <= i.high) for i in intervals)
        informative += intervals[-1].low > 0  # it sees that the weight matters at all
    assert len(population) >= 40
    assert misses / RESAMPLES <= ALPHA
    assert informative / RESAMPLES > 0.95
