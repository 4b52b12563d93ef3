"""The interval and the looks of the sequential evaluation, on per-token differences drawn with a
known mean: the interval is centred on the log perplexity ratio, covers the true mean at least as
often as it says, also when neighbouring tokens are correlated, and never uses a block that spans
two windows."""

import math

import pytest
import torch

from workers.science.validation.statistics import (
    ALPHA,
    BLOCK_TOKENS,
    Interval,
    block_means,
    interval,
    look_windows,
    t_quantile,
    t_within,
)

WINDOW_PREDICTIONS = 255  # a 256-token window
DRAWS = 400


def test_looks_double_up_to_the_budget():
    assert look_windows(1) == [1]
    assert look_windows(4) == [1, 2, 4]
    assert look_windows(5) == [1, 2, 4, 5]
    assert look_windows(10) == [1, 2, 4, 8, 10]


def test_the_estimate_is_the_log_perplexity_ratio():
    diffs = [torch.tensor([0.5, 1.5, 2.0]), torch.tensor([1.0] * 64)]
    result = interval(diffs, looks=1)
    assert result.mean == pytest.approx(float(torch.cat(diffs).mean()))
    assert result.tokens == 67
    assert result.ratio == pytest.approx(math.exp(result.mean))


def test_blocks_never_span_windows():
    windows = [torch.zeros(WINDOW_PREDICTIONS), torch.ones(WINDOW_PREDICTIONS)]
    means = block_means(windows)
    assert means.numel() == 2 * (WINDOW_PREDICTIONS // BLOCK_TOKENS)
    assert set(means.tolist()) == {0.0, 1.0}


def test_fewer_than_two_blocks_give_no_bound():
    result = interval([torch.tensor([0.1, 0.2, 0.3])], looks=1)
    assert result.low == -math.inf and result.high == math.inf


def test_an_infinite_difference_gives_an_infinite_ratio():
    diffs = torch.zeros(WINDOW_PREDICTIONS)
    diffs[3] = math.inf
    result = interval([diffs], looks=1)
    assert result.ratio == math.inf and result.above(2.0)


# Correlation of neighbouring tokens' differences in the correlated case: a variance inflation
# of (1 + rho) / (1 - rho) = 3 for a mean of many tokens, well above what SmolLM2's ablations show
# (block means of 32 tokens spread 1.0-1.2 times as much as independent tokens would make them).
RHO = 0.5


def _ar1(generator: torch.Generator, draws: int, n: int, rho: float) -> torch.Tensor:
    """`draws` stationary AR(1) series of unit innovations: each token leans on the one before."""
    noise = torch.randn(draws, n, generator=generator, dtype=torch.float64)
    out = torch.empty(draws, n, dtype=torch.float64)
    out[:, 0] = noise[:, 0] / math.sqrt(1 - rho**2)
    for t in range(1, n):
        out[:, t] = rho * out[:, t - 1] + noise[:, t]
    return out


@pytest.mark.parametrize("rho", [0.0, RHO])
def test_every_look_covers_the_true_mean_at_least_as_often_as_stated(rho):
    """Four windows looked at after 1, 2 and 4: the chance that any of the three intervals misses
    the true mean must stay below ALPHA, with independent and with correlated tokens."""
    generator = torch.Generator().manual_seed(7)
    true_mean, looks = 0.7, look_windows(4)
    series = true_mean + _ar1(generator, DRAWS * 4, WINDOW_PREDICTIONS, rho)
    misses = 0
    for draw in range(DRAWS):
        windows = list(series[draw * 4 : draw * 4 + 4])
        misses += any(
            not (r.low <= true_mean <= r.high)
            for r in (interval(windows[:n], len(looks)) for n in looks)
        )
    assert misses / DRAWS <= ALPHA


def test_treating_correlated_tokens_as_independent_would_not_cover():
    """Why blocks: with correlated tokens, an interval on single tokens misses far more often
    than it says; the batch-means interval does not. Both at the level one look of the default
    budget (three looks) uses."""
    generator = torch.Generator().manual_seed(11)
    looks = len(look_windows(4))
    quantile = t_quantile(WINDOW_PREDICTIONS - 1, 1 - ALPHA / looks / 2)
    naive_misses = batch_misses = 0
    for diffs in _ar1(generator, DRAWS, WINDOW_PREDICTIONS, RHO):
        batch = interval([diffs], looks)
        batch_misses += not (batch.low <= 0.0 <= batch.high)
        half = quantile * float(diffs.std()) / math.sqrt(diffs.numel())
        naive_misses += not (-half <= float(diffs.mean()) <= half)
    assert naive_misses / DRAWS > 2 * ALPHA
    assert batch_misses / DRAWS <= ALPHA / 2


def test_more_tokens_give_a_narrower_interval():
    generator = torch.Generator().manual_seed(3)
    windows = [
        torch.randn(WINDOW_PREDICTIONS, generator=generator, dtype=torch.float64) for _ in range(4)
    ]
    one, four = interval(windows[:1], 3), interval(windows, 3)
    assert four.high - four.low < (one.high - one.low) / 1.5


def test_student_t_quantiles_match_the_published_tables():
    # Two-sided 95% and 99% critical values (any statistics table).
    assert t_quantile(1, 0.975) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(2, 0.975) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile(6, 0.995) == pytest.approx(3.7074, abs=1e-4)
    assert t_quantile(7, 0.975) == pytest.approx(2.3646, abs=1e-4)
    assert t_quantile(30, 0.975) == pytest.approx(2.0423, abs=1e-4)
    assert t_quantile(120, 0.995) == pytest.approx(2.6174, abs=1e-4)


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------


def _t_within_by_integration(t: float, df: int, steps: int = 4000) -> float:
    """P(|T| <= t) by Simpson's rule over Student's t density: an independent check of the
    closed form."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    h = t / steps
    total = density(0.0) + density(t)
    total += sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return 2 * total * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 31])
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 6.0])
def test_the_t_distribution_matches_its_density_integrated(df, t):
    assert t_within(t, df) == pytest.approx(_t_within_by_integration(t, df), abs=1e-9)


def test_the_t_distribution_is_zero_at_zero_and_tends_to_one():
    for df in (1, 2, 3, 10):
        assert t_within(0.0, df) == 0.0
        assert 1 - t_within(1e6, df) < 1e-5


def _constant_windows(values: list[float], length: int = BLOCK_TOKENS) -> list[torch.Tensor]:
    """One window of `length` equal differences per value: each window is one block."""
    return [torch.full((length,), v, dtype=torch.float64) for v in values]


def test_the_interval_is_the_t_interval_of_the_block_means():
    # Eight block means 1..8: mean 4.5, sample standard deviation sqrt(6); seven degrees of
    # freedom, two-sided 95% (one look): 2.3646 from the tables.
    result = interval(_constant_windows([1, 2, 3, 4, 5, 6, 7, 8]), looks=1)
    half = 2.3646 * math.sqrt(6) / math.sqrt(8)
    assert (result.mean, result.blocks, result.tokens) == (4.5, 8, 8 * BLOCK_TOKENS)
    assert result.low == pytest.approx(4.5 - half, abs=1e-4)
    assert result.high == pytest.approx(4.5 + half, abs=1e-4)
    assert result.confidence == 1 - ALPHA
    # Two looks: each at 97.5%, two-sided (7 degrees of freedom: 2.8412).
    two = interval(_constant_windows([1, 2, 3, 4, 5, 6, 7, 8]), looks=2)
    assert two.high == pytest.approx(4.5 + 2.8412 * math.sqrt(6) / math.sqrt(8), abs=1e-4)
    assert two.confidence == 1 - ALPHA / 2


def test_two_blocks_give_a_bounded_interval():
    result = interval(_constant_windows([1.0, 3.0]), looks=1)
    half = 12.7062 * math.sqrt(2) / math.sqrt(2)  # one degree of freedom
    assert result.low == pytest.approx(2.0 - half, abs=1e-3)
    assert result.high == pytest.approx(2.0 + half, abs=1e-3)


def test_no_tokens_give_no_estimate_and_no_bound():
    result = interval([torch.zeros(0), torch.zeros(0)], looks=4)
    assert math.isnan(result.mean)
    assert (result.low, result.high) == (-math.inf, math.inf)
    assert (result.confidence, result.blocks, result.tokens) == (1 - ALPHA / 4, 0, 0)


def test_one_token_is_an_estimate_without_a_bound():
    result = interval([torch.tensor([0.25])], looks=2)
    assert (result.mean, result.low, result.high) == (0.25, -math.inf, math.inf)
    assert (result.confidence, result.blocks, result.tokens) == (1 - ALPHA / 2, 1, 1)


def test_an_infinite_difference_gives_an_interval_that_is_the_point():
    diffs = torch.zeros(WINDOW_PREDICTIONS)
    diffs[3] = math.inf
    result = interval([diffs], looks=2)
    assert (result.mean, result.low, result.high) == (math.inf, math.inf, math.inf)
    assert result.confidence == 1 - ALPHA / 2
    assert (result.blocks, result.tokens) == (
        WINDOW_PREDICTIONS // BLOCK_TOKENS,
        WINDOW_PREDICTIONS,
    )


def test_block_means_skip_empty_windows_and_keep_single_tokens():
    means = block_means([torch.zeros(0), torch.tensor([2.0]), torch.ones(2 * BLOCK_TOKENS)])
    assert means.tolist() == [2.0, 1.0, 1.0]
    none = block_means([])
    assert none.numel() == 0 and none.dtype == torch.float64 == means.dtype


def test_an_interval_at_the_threshold_is_above_it_not_below_it():
    at = Interval(math.log(2.0), math.log(2.0), math.log(2.0), 0.95, 8, 256)
    assert at.above(2.0) and not at.below(2.0) and at.excludes(2.0)
    assert at.below(2.0 + 1e-9)
