"""The detection and verdict rules as pure functions."""

import math

import torch

from workers.science import detection
from workers.science.architectures import ARCHITECTURES
from workers.science.detection import (
    explain_spike,
    spike_rows,
    summarize,
    typical_scale,
)
from workers.science.validation import ablation
from workers.science.validation.controls.random import (
    RANDOM_CONTROL_WEIGHTS,
    RandomControl,
)
from workers.science.validation.controls.top_k import TOP_K_CONTROL_WEIGHTS, TopKControl, largest
from workers.science.validation.statistics import Interval
from workers.science.validation.verdict import verdict


def test_typical_scale_is_the_lower_median_of_earlier_layers():
    assert typical_scale([]) is None
    assert typical_scale([5.0]) == 5.0
    assert typical_scale([7.0, 3.0]) == 3.0
    assert typical_scale([1.0, 1000.0, 2.0, 3.0]) == 2.0  # one spike cannot raise it


def _activity(outputs: torch.Tensor, inputs: torch.Tensor | None = None):
    inputs = inputs if inputs is not None else torch.ones(outputs.shape[0], 8)
    return summarize(inputs, outputs)


def test_spike_rows_need_orders_of_magnitude_over_the_typical_scale():
    y = torch.ones(4, 16)
    y[0, 3] = 0.99 * detection.SUPER_ACTIVATION_RATIO
    assert spike_rows(_activity(y), typical=1.0) == []
    y[0, 3] = -2 * detection.SUPER_ACTIVATION_RATIO
    rows = spike_rows(_activity(y), typical=1.0)
    assert [(r.row, r.token) for r in rows] == [(3, 0)]
    assert rows[0].value < 0 and rows[0].ratio == 2 * detection.SUPER_ACTIVATION_RATIO


def test_first_layer_is_never_a_spike():
    y = torch.ones(2, 4)
    y[0, 0] = 1e6
    assert spike_rows(_activity(y), typical=None) == []


def test_rows_far_below_the_layers_strongest_are_its_shadow():
    y = torch.ones(2, 8)
    y[0, 1] = 10_000.0
    y[0, 2] = 500.0  # 100x the typical scale but 20x below the layer's spike
    rows = spike_rows(_activity(y), typical=1.0)
    assert [r.row for r in rows] == [1]


def test_explain_spike_names_the_contributing_columns_not_the_largest_weight():
    weight_row = torch.tensor([0.01, 3.0, 50.0, 2.0, 0.02])
    x = torch.tensor([1.0, 1000.0, 0.0, 900.0, 1.0])  # column 2: huge weight, dead input
    y = float(weight_row @ x)
    found = explain_spike(weight_row, x, y)
    assert [c.col for c in found] == [1, 3]
    assert sum(c.share for c in found) > 0.99


def test_explain_spike_ignores_contributions_against_the_spike():
    weight_row = torch.tensor([4.0, -1.0])
    x = torch.tensor([1000.0, 1000.0])
    found = explain_spike(weight_row, x, float(weight_row @ x))
    assert [c.col for c in found] == [0]


def _ratio(low: float, high: float) -> Interval:
    """An interval of perplexity ratios from `low` to `high`."""
    mean = (math.log(low) + math.log(high)) / 2
    return Interval(mean, math.log(low), math.log(high), 0.98, 8, 256)


def test_verdict_rule():
    steady = {"random": _ratio(0.99, 1.01)}
    assert verdict(_ratio(15.0, 22.0), steady)[0] == "verified"
    assert verdict(_ratio(1.0, 1.1), steady)[0] == "rejected"
    # a fragile evaluation (the random control moves perplexity) verifies nothing
    state, reason = verdict(_ratio(15.0, 22.0), {"random": _ratio(1.2, 1.3)})
    assert state == "rejected" and "random control" in reason
    # a control that lowers perplexity does not stand in the way (one-sided)
    assert verdict(_ratio(15.0, 22.0), {"random": _ratio(0.5, 0.6)})[0] == "verified"


def test_an_interval_that_straddles_a_threshold_decides_nothing():
    steady = {"random": _ratio(0.99, 1.01)}
    state, reason = verdict(_ratio(1.6, 2.5), steady)
    assert state == "candidate" and "straddles x2.0" in reason
    # a clear ablation with a random control that may or may not exceed x1.05 stays a candidate
    state, reason = verdict(_ratio(15.0, 22.0), {"random": _ratio(1.01, 1.09)})
    assert state == "candidate" and "random control" in reason
    # ... and a rejection stays a rejection whatever the control shows
    assert verdict(_ratio(1.0, 1.1), {"random": _ratio(1.01, 1.09)})[0] == "rejected"


def test_zeroed_restores_the_exact_weights():

    weight = torch.randn(6, 5)
    original = weight.clone()
    with ablation.zeroed(weight, ARCHITECTURES["gpt2"], [(1, 4), (2, 0)]):
        assert weight[4, 1] == 0 and weight[0, 2] == 0  # Conv1D: stored [in, out]
    assert torch.equal(weight, original)


def test_controls_exclude_candidates_and_are_reproducible():
    weight = torch.randn(32, 64)
    weight[5, 7] = 100.0
    random_a = RandomControl().coordinates(weight, {(5, 7)}, layer=3)
    random_b = RandomControl().coordinates(weight, {(5, 7)}, layer=3)
    top_a = TopKControl().coordinates(weight, {(5, 7)}, layer=3)
    assert random_a == random_b
    assert len(random_a) == RANDOM_CONTROL_WEIGHTS
    assert len(top_a) == TOP_K_CONTROL_WEIGHTS
    assert (5, 7) not in random_a and (5, 7) not in top_a


def test_top_k_found_block_by_block_is_the_top_k_of_the_whole_matrix():
    weight = torch.randn(700, 90, generator=torch.Generator().manual_seed(5))
    whole = torch.topk(weight.abs().reshape(-1), 25).indices
    assert largest(weight, 25) == [divmod(int(i), 90) for i in whole]
    assert largest(weight.t(), 25) == [divmod(int(i), 700) for i in torch.topk(weight.t().abs().reshape(-1), 25).indices]
