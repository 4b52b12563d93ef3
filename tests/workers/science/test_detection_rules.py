"""The detection and verdict rules as pure functions."""

import math

import torch

from workers.contract.report import LayerProfile
from workers.contract.report import Observation as ReportedObservation
from workers.science import detection
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
from workers.science.feed_forward import Layout, ProjectionSite, SiteKind
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
    conv1d = ProjectionSite(SiteKind.CONV1D, "mlp.c_proj", "weight", Layout.IN_OUT, None, inner=6)
    with ablation.zeroed(weight, conv1d, [(1, 4), (2, 0)]):
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
    assert largest(weight.t(), 25) == [
        divmod(int(i), 700) for i in torch.topk(weight.t().abs().reshape(-1), 25).indices
    ]


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


# --- DetectionState over several layers and prompts, and what the report reads of it -------

D_MODEL, D_FF, TOKENS = 16, 8, 4


def _layer(
    max_output: float, input_at: tuple[int, int, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """An ordinary layer: |Y| = 1 but one entry `max_output`; X zero but one entry."""
    outputs = torch.ones(TOKENS, D_MODEL)
    outputs[3, 2] = max_output
    inputs = torch.zeros(TOKENS, D_FF)
    token, col, value = input_at
    inputs[token, col] = value
    return inputs, outputs


def _spiking_layers():
    """Two prompts over three layers; layer 2 spikes on both, against the earlier layers.

    Prompt 0: earlier maxima 4 and 2 (typical 2, the lower median); row 9 reaches -1024 at
    token 1 (512x) and row 3 reaches 512 at token 2 (256x). Prompt 1: earlier maxima 8 and 16
    (typical 8); row 9 reaches -2048 at token 3 (256x). Row 9's spike is carried by columns 4
    and 1 (weights -4 and -2), row 3's by column 0 (weight 4).
    """
    weight = torch.zeros(D_MODEL, D_FF)
    weight[9, 4], weight[9, 1], weight[3, 0] = -4.0, -2.0, 4.0
    spike0 = torch.ones(TOKENS, D_MODEL)
    spike0[1, 9], spike0[2, 3] = -1024.0, 512.0
    x0 = torch.zeros(TOKENS, D_FF)
    x0[1, 4], x0[1, 1], x0[2, 0] = 128.0, 128.0, 128.0  # contributions -512, -256, 512
    spike1 = torch.ones(TOKENS, D_MODEL)
    spike1[3, 9] = -2048.0
    x1 = torch.zeros(TOKENS, D_FF)
    x1[3, 4], x1[3, 1] = 256.0, 256.0  # contributions -1024, -512
    layers = [
        [summarize(*_layer(4.0, (0, 6, -7.0))), summarize(*_layer(8.0, (2, 5, 3.0)))],
        [summarize(*_layer(2.0, (1, 1, 9.0))), summarize(*_layer(16.0, (3, 7, -2.0)))],
        [summarize(x0, spike0), summarize(x1, spike1)],
    ]
    return weight, layers


def test_later_layers_are_judged_against_each_prompts_earlier_layers():
    weight, layers = _spiking_layers()
    state = DetectionState(prompts=2)
    assert state.observe_layer(0, layers[0], weight) == []
    assert state.observe_layer(1, layers[1], weight) == []
    assert state.history == [[4.0, 2.0], [8.0, 16.0]]
    found = state.observe_layer(2, layers[2], weight)
    # Sorted by row then column, not in the order found (strongest row, largest share first).
    assert [c.key for c in found] == [(2, 3, 0), (2, 9, 1), (2, 9, 4)]
    assert [c.value for c in found] == [4.0, -2.0, -4.0]
    assert state.candidates == {c.key: c for c in found}
    assert state.history == [[4.0, 2.0], [8.0, 16.0]]  # a spiking layer is not typical
    earlier = Rule.EARLIER_LAYERS
    assert found[2].observations == [
        detection.Observation(
            prompt=0,
            token=1,
            output=-1024.0,
            input=128.0,
            contribution=-512.0,
            share=0.5,
            ratio=512.0,
            threshold=200.0,
            rule=earlier,
        ),
        detection.Observation(
            prompt=1,
            token=3,
            output=-2048.0,
            input=256.0,
            contribution=-1024.0,
            share=0.5,
            ratio=256.0,
            threshold=800.0,
            rule=earlier,
        ),
    ]
    assert [(o.prompt, o.contribution, o.share) for o in found[1].observations] == [
        (0, -256.0, 0.25),
        (1, -512.0, 0.25),
    ]
    assert found[0].observations == [
        detection.Observation(
            prompt=0,
            token=2,
            output=512.0,
            input=128.0,
            contribution=512.0,
            share=1.0,
            ratio=256.0,
            threshold=200.0,
            rule=earlier,
        )
    ]
    assert found[2].threshold == 200.0  # the lower of the prompts' thresholds


def test_the_profile_holds_every_layer_as_each_prompt_saw_it():
    weight, layers = _spiking_layers()
    state = DetectionState(prompts=2)
    for layer, activities in enumerate(layers):
        state.observe_layer(layer, activities, weight)
    assert [entry["layer"] for entry in state.profile] == [0, 1, 2]
    assert [entry["spike"] for entry in state.profile] == [False, False, True]
    # max |output| over the typical earlier layer: none for layer 0; 2/4 and 16/8 for layer 1
    assert [[p["spike_ratio"] for p in entry["prompts"]] for entry in state.profile] == [
        [None, None],
        [0.5, 2.0],
        [512.0, 256.0],
    ]
    first, second = layers[1]
    prompt_entries = [
        {
            "prompt": 0,
            "max_abs_input": 9.0,
            "input_token": 1,
            "input_col": 1,
            "max_abs_output": 2.0,
            "output_token": 3,
            "output_row": 2,
            "output_percentiles": first.output_percentiles,
            "spike_ratio": 0.5,
            "within_layer_ratio": 2.0,
        },
        {
            "prompt": 1,
            "max_abs_input": 2.0,
            "input_token": 3,
            "input_col": 7,
            "max_abs_output": 16.0,
            "output_token": 3,
            "output_row": 2,
            "output_percentiles": second.output_percentiles,
            "spike_ratio": 2.0,
            "within_layer_ratio": 16.0,
        },
    ]
    assert state.profile[1] == {
        "layer": 1,
        **{k: v for k, v in prompt_entries[0].items() if k != "prompt"},
        "max_abs_output_per_prompt": [2.0, 16.0],
        "spike": False,
        "prompts": prompt_entries,
    }
    # ... which is what the report's contract reads (it forbids unknown fields).
    for entry in state.profile:
        assert LayerProfile(**entry).layer == entry["layer"]


def test_an_observation_is_reported_under_the_contracts_names():
    observation = detection.Observation(
        prompt=1,
        token=3,
        output=-2048.0,
        input=256.0,
        contribution=-1024.0,
        share=0.5,
        ratio=256.0,
        threshold=800.0,
        rule=Rule.WITHIN_LAYER,
    )
    reported = {
        "prompt": 1,
        "token": 3,
        "super_activation": -2048.0,
        "input_activation": 256.0,
        "contribution": -1024.0,
        "share": 0.5,
        "spike_ratio": 256.0,
        "spike_rule": "within_layer",
    }
    assert observation.as_dict() == reported
    assert ReportedObservation(**observation.as_dict()).model_dump() == reported
