"""The detection and verdict rules as pure functions."""

import math

import torch

from workers.science import detection
from workers.science.architectures import ARCHITECTURES
from workers.science.detection import (
    DetectionState,
    Rule,
    SpikeReference,
    explain_spike,
    spike_reference,
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


def _earlier(typical: float) -> SpikeReference:
    return SpikeReference(Rule.EARLIER_LAYERS, typical, detection.SUPER_ACTIVATION_RATIO)


def test_spike_rows_need_orders_of_magnitude_over_the_typical_scale():
    y = torch.ones(4, 16)
    y[0, 3] = 0.99 * detection.SUPER_ACTIVATION_RATIO
    assert spike_rows(_activity(y), _earlier(1.0)) == []
    y[0, 3] = -2 * detection.SUPER_ACTIVATION_RATIO
    rows = spike_rows(_activity(y), _earlier(1.0))
    assert [(r.row, r.token) for r in rows] == [(3, 0)]
    assert rows[0].value < 0 and rows[0].ratio == 2 * detection.SUPER_ACTIVATION_RATIO


def _first_token_spike(peak: float, tokens: int = 8, rows: int = 64) -> torch.Tensor:
    """Outputs of ordinary size (|Y| = 1, so the median is 1) with `peak` at token 0, row 5."""
    y = torch.ones(tokens, rows)
    y[0, 5] = peak
    return y


def test_layer_0_is_judged_against_its_own_median_output():
    below = _activity(_first_token_spike(0.99 * detection.WITHIN_LAYER_RATIO))
    above = _activity(_first_token_spike(2 * detection.WITHIN_LAYER_RATIO))
    assert spike_reference(below, []).rule == Rule.WITHIN_LAYER
    assert spike_rows(below, spike_reference(below, [])) == []
    rows = spike_rows(above, spike_reference(above, []))
    assert [(r.row, r.token) for r in rows] == [(5, 0)]
    assert rows[0].ratio == 2 * detection.WITHIN_LAYER_RATIO


def test_later_layers_keep_the_earlier_layers_rule():
    # 2,000x its own median but only 20x the typical earlier layer: not a spike.
    activity = _activity(_first_token_spike(2 * detection.WITHIN_LAYER_RATIO))
    reference = spike_reference(activity, [100.0, 120.0])
    assert (reference.rule, reference.scale) == (Rule.EARLIER_LAYERS, 100.0)
    assert spike_rows(activity, reference) == []


def test_a_spiking_layer_is_not_the_typical_layer_for_the_next():
    """After a super activation in layer 0, layer 1 has no typical earlier layer: it is judged
    within itself, not against layer 0's spike (against which nothing could spike)."""
    weight = torch.zeros(64, 8)
    weight[5, 2] = 1.0
    inputs = torch.zeros(8, 8)
    inputs[0, 2] = 5000.0
    state = DetectionState(prompts=1)
    layer0 = summarize(inputs, _first_token_spike(5000.0))
    assert [c.key for c in state.observe_layer(0, [layer0], weight)] == [(0, 5, 2)]
    assert state.history == [[]]
    layer1 = summarize(inputs, _first_token_spike(3000.0))
    found = state.observe_layer(1, [layer1], weight)
    assert [c.key for c in found] == [(1, 5, 2)]
    observation = found[0].observations[0]
    assert observation.rule == Rule.WITHIN_LAYER
    assert observation.threshold == detection.WITHIN_LAYER_RATIO * 1.0
    assert state.profile[1]["spike_ratio"] is None
    assert state.profile[1]["within_layer_ratio"] == 3000.0
    # Layer 2, ordinary: layers 0 and 1 spiked, so it is judged within itself too.
    layer2 = summarize(inputs * 0, torch.ones(8, 64))
    assert state.observe_layer(2, [layer2], weight) == []
    assert state.history == [[1.0]]


def test_rows_far_below_the_layers_strongest_are_its_shadow():
    y = torch.ones(2, 8)
    y[0, 1] = 10_000.0
    y[0, 2] = 500.0  # 100x the typical scale but 20x below the layer's spike
    rows = spike_rows(_activity(y), _earlier(1.0))
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


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------


def test_summarize_finds_the_largest_input_and_output_by_token_and_channel():
    # One sequence [1, tokens, channels], with tokens, inputs and outputs of different sizes.
    inputs = torch.zeros(1, 5, 7)
    inputs[0, 3, 6] = -9.0
    outputs = torch.ones(1, 5, 3)
    outputs[0, 2, 1] = -50.0
    activity = summarize(inputs, outputs)
    assert (activity.max_input, activity.input_token, activity.input_col) == (9.0, 3, 6)
    assert (activity.max_output, activity.output_token, activity.output_row) == (50.0, 2, 1)
    assert activity.output_percentiles["p50"] == 1.0 == activity.median_output
    assert set(activity.output_percentiles) == {"p50", "p99", "p99.9"}
    assert activity.row_max.tolist() == [1.0, 50.0, 1.0]
    assert activity.row_value[1] == -50.0 and int(activity.row_token[1]) == 2


def test_the_typical_scale_of_an_odd_number_of_layers_is_their_median():
    assert typical_scale([5.0, 1.0, 4.0, 2.0, 3.0]) == 3.0


def test_within_layer_ratio_is_max_over_median_and_none_for_a_silent_layer():
    y = torch.full((4, 16), 2.0)
    y[1, 5] = 60.0
    assert detection.within_layer_ratio(_activity(y)) == 30.0
    assert detection.within_layer_ratio(_activity(torch.zeros(4, 16))) is None


def test_the_reference_of_a_silent_first_layer_is_none():
    assert spike_reference(_activity(torch.zeros(4, 16)), []) is None


def test_earlier_layers_set_the_scale_only_when_they_had_any_output():
    y = torch.ones(4, 16)
    silent_before = spike_reference(_activity(y), [0.0])
    assert silent_before.rule == Rule.WITHIN_LAYER
    small_before = spike_reference(_activity(y), [0.5])
    assert (small_before.rule, small_before.scale) == (Rule.EARLIER_LAYERS, 0.5)


def test_spike_rows_start_at_the_threshold_strongest_first_with_their_ratio():
    y = torch.ones(4, 16)
    reference = _earlier(2.0)  # threshold 200
    y[0, 3] = reference.threshold  # exactly at the threshold
    y[1, 9] = 1.5 * reference.threshold
    rows = spike_rows(_activity(y), reference)
    assert [(r.row, r.token) for r in rows] == [(9, 1), (3, 0)]
    assert [r.ratio for r in rows] == [150.0, 100.0]


def test_explain_spike_reports_each_contribution():
    weights = torch.tensor([8.0, 2.0, 0.5])
    found = explain_spike(weights, torch.ones(3), 16.0)  # shares exact in float32
    assert [(c.col, c.contribution, c.share) for c in found] == [(0, 8.0, 0.5), (1, 2.0, 0.125)]
