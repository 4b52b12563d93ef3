"""How sure a verdict is: a confidence interval for a variant's perplexity ratio, and the
sequential stop that uses the same interval. Pure functions over per-token loss differences.

A variant and the baseline are scored on the same tokens; the per-token differences
d_t = NLL_variant(t) - NLL_baseline(t) have the log perplexity ratio as their mean. Tokens of one
text are not independent (they share context), so the interval is built on *batch means*: the
predictions of each evaluation window are cut into blocks of about `BLOCK_TOKENS` consecutive
predictions, block means are treated as independent, roughly normal draws, and a Student-t
interval is put around the mean of the tokens.

The evaluation is read in looks: after 1, 2, 4, ... windows and after the last window of the
budget (`look_windows`). A variant stops at the first look whose interval excludes its threshold
(its verdict can no longer change). Every look's interval has confidence 1 - ALPHA / looks, so by
the union bound the chance that *any* interval of a variant misses the true ratio is at most
ALPHA, however early it stops: a stopped variant is judged with the same guarantee as one that
ran to the end, and the exhaustive evaluation (every variant to the end) reports the interval of
the last look at the same level.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

# Overall error bound of a variant's intervals, over all looks together (union bound).
ALPHA = 0.05
# Predictions per block of the batch-means interval: long enough that the context two blocks
# share matters little next to what each block sees alone (the per-token differences of a
# SmolLM2 ablation lose their correlation within a few tokens), short enough that one
# 256-token window gives seven blocks.
BLOCK_TOKENS = 32


@dataclass(frozen=True)
class Interval:
    """The log perplexity ratio of a variant over the baseline, with its confidence interval."""

    mean: float  # mean per-token loss difference: log(ppl_variant / ppl_baseline)
    low: float
    high: float
    confidence: float
    blocks: int
    tokens: int

    @property
    def ratio(self) -> float:
        return math.exp(self.mean)

    @property
    def ratio_low(self) -> float:
        return math.exp(self.low)

    @property
    def ratio_high(self) -> float:
        return math.exp(self.high) if self.high < 700 else math.inf

    def above(self, ratio: float) -> bool:
        """The whole interval lies at or above `ratio`."""
        return self.low >= math.log(ratio)

    def below(self, ratio: float) -> bool:
        """The whole interval lies below `ratio`."""
        return self.high < math.log(ratio)

    def excludes(self, ratio: float) -> bool:
        return self.above(ratio) or self.below(ratio)

    def describe(self) -> str:
        return (
            f"x{self.ratio:.3f} ({self.confidence:.1%} CI x{self.ratio_low:.3f}-"
            f"x{self.ratio_high:.3f}, {self.tokens} tokens)"
        )


def look_windows(windows: int) -> list[int]:
    """The window counts after which a sequential evaluation looks: 1, 2, 4, ... and the last.

    Doubling keeps the number of looks (and so the per-look error) logarithmic in the budget.
    """
    looks, n = [], 1
    while n < windows:
        looks.append(n)
        n *= 2
    looks.append(max(windows, 1))
    return looks


def block_means(window_differences: list[torch.Tensor]) -> torch.Tensor:
    """Means of consecutive blocks of about BLOCK_TOKENS predictions, never across windows."""
    means: list[torch.Tensor] = []
    for diffs in window_differences:
        if diffs.numel() == 0:
            continue
        blocks = max(1, diffs.numel() // BLOCK_TOKENS)
        means.extend(block.mean() for block in torch.tensor_split(diffs.double(), blocks))
    return torch.stack(means) if means else torch.zeros(0, dtype=torch.float64)


def t_within(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer number of degrees of freedom `df` >= 1, in
    closed form (Abramowitz and Stegun, Handbook of Mathematical Functions, 26.7.3 and 26.7.4).

    Written out rather than taken from scipy: with scipy installed, transformers imports
    scipy.optimize with its model code, a second of start-up and tens of MB for every command.
    """
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    term, total = 1.0, 1.0
    if df % 2:  # odd: (2/pi) [theta + sin cos (1 + 2/3 c^2 + (2*4)/(3*5) c^4 + ...)]
        if df == 1:
            return 2 * theta / math.pi
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    for k in range(1, (df - 2) // 2 + 1):  # even: sin [1 + 1/2 c^2 + (1*3)/(2*4) c^4 + ...]
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


@lru_cache
def t_quantile(df: int, probability: float) -> float:
    """The `probability` quantile (> 0.5) of Student's t with `df` degrees of freedom, by
    bisection on its distribution function, to about 1e-12."""
    within = 2 * probability - 1  # P(|T| <= q)
    low, high = 0.0, 1.0
    while t_within(high, df) < within:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if t_within(middle, df) < within else (low, middle)
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2


def interval(window_differences: list[torch.Tensor], looks: int, alpha: float = ALPHA) -> Interval:
    """The interval of one look, at confidence 1 - alpha / looks (two-sided).

    The point estimate is the mean over all tokens (exactly the log perplexity ratio); its
    standard error is the spread of the block means over the square root of their number. With
    fewer than two blocks there is no spread to measure and the interval is unbounded. A
    non-finite difference (an infinite perplexity) makes the estimate and the interval infinite.
    """
    tokens = sum(int(d.numel()) for d in window_differences)
    level = alpha / looks
    if tokens == 0:
        return Interval(math.nan, -math.inf, math.inf, 1 - level, 0, 0)
    diffs = torch.cat([d.double().reshape(-1) for d in window_differences])
    mean = float(diffs.mean())
    means = block_means(window_differences)
    n = int(means.numel())
    if not math.isfinite(mean):
        return Interval(mean, mean, mean, 1 - level, n, tokens)
    if n < 2:
        return Interval(mean, -math.inf, math.inf, 1 - level, n, tokens)
    half = t_quantile(n - 1, 1 - level / 2) * float(means.std()) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, 1 - level, n, tokens)
