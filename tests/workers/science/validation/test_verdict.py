"""The verdict's reasons: what was zeroed, what it did, and what the controls add or doubt."""

import math

from workers.science.validation.statistics import Interval
from workers.science.validation.verdict import verdict


def _ratio(low: float, high: float) -> Interval:
    """An interval of perplexity ratios from `low` to `high`."""
    mean = (math.log(low) + math.log(high)) / 2
    return Interval(mean, math.log(low), math.log(high), 0.98, 8, 256)


def test_a_verified_weight_says_what_was_zeroed_and_what_it_did():
    clear = _ratio(15.0, 22.0)
    state, reason = verdict(clear, {})
    assert state == "verified"
    assert reason == f"zeroing it multiplies perplexity by {clear.describe()} (>= 2.0)"


def test_a_verified_weight_says_what_the_random_control_did():
    clear = _ratio(15.0, 22.0)
    state, reason = verdict(clear, {"random": _ratio(0.99, 1.01)}, subject="zeroing both")
    assert state == "verified"
    assert reason == (
        f"zeroing both multiplies perplexity by {clear.describe()} (>= 2.0)"
        f" while 100 random weights move it x{_ratio(0.99, 1.01).ratio:.3f}"
    )


def test_a_doubtful_random_control_keeps_a_clear_ablation_a_candidate():
    clear, doubtful = _ratio(15.0, 22.0), _ratio(1.01, 1.09)
    state, reason = verdict(clear, {"random": doubtful})
    assert state == "candidate"
    assert reason.startswith(
        f"zeroing it multiplies perplexity by {clear.describe()} (>= 2.0), but the "
    )
    assert reason.endswith(
        f"random control moved perplexity {doubtful.describe()}, which neither "
        "shows nor rules out a rise above x1.05"
    )
