"""Finding super activations and the weights that cause them: pure functions over tensors.

For one layer and one prompt, the down projection maps X (tokens x d_ff) to Y (tokens x d_model).
A *super activation* is an entry of Y that stands orders of magnitude above the model's typical
layer; the *super weights* are the entries W[row, c] whose contributions W[row, c] * X[t, c]
make up most of that entry. Explaining the spike by contribution, not ranking weights by
magnitude, is what keeps a huge weight on a dead input channel from being reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import cast

import torch

# A layer spikes when its largest |output| is at least this many times the typical layer's
# largest |output|: "orders of magnitude" (docs/method.md). On SmolLM2-135M, 100 lies between
# the super activations and the largest layer without a spike with a wide margin on either side
# (the figures: docs/measurements.md#per-layer-profile).
SUPER_ACTIVATION_RATIO = 100.0
# Where no earlier layer can serve as the typical one (layer 0, or a layer after nothing but
# spiking layers), a layer spikes when its largest |output| is at least this many times its own
# median |output|. 1,000 is the massive-activation criterion of Sun, Chen, Kolter, Liu,
# "Massive Activations in Large Language Models" (arXiv:2402.17762, 2024): about 1,000 times
# the median magnitude. On SmolLM2-135M (4 default prompts) layer 0 stays far below it and the
# super activations of layers 11 and 28 above it, while the largest layer without a spike
# (layer 2) comes close, which is why this rule decides only where the other cannot
# (the figures: docs/measurements.md#layer-0-and-the-within-layer-ratio).
WITHIN_LAYER_RATIO = 1000.0
# Within a spiking layer, only rows within one order of magnitude of its strongest row are
# spikes of their own: a huge input channel also lifts every other row it feeds a little
# (ordinary weights times a huge activation), and those rows are its shadow, not new spikes.
MIN_ROW_FRACTION_OF_LAYER_MAX = 0.1
# A weight explains a spike when its contribution is at least this share of the spiking output.
# Two weights planted in one row each carry ~half; a dense sum of small terms has none.
MIN_CONTRIBUTION_SHARE = 0.10
# Bounds on what one spike can name (the paper reports at most 6 super weights per model).
MAX_SPIKE_ROWS_PER_LAYER = 8
MAX_WEIGHTS_PER_ROW = 6
PERCENTILES = (0.5, 0.99, 0.999)


@dataclass
class LayerActivity:
    """What one down projection did on one sequence."""

    max_input: float
    input_token: int
    input_col: int
    max_output: float
    output_token: int
    output_row: int
    output_percentiles: dict[str, float]
    median_output: float  # median of |Y| over every token and row: the layer's typical output
    row_max: torch.Tensor  # [d_model]: max over tokens of |Y[:, row]|
    row_token: torch.Tensor  # [d_model]: the token where that max is
    row_value: torch.Tensor  # [d_model]: Y[row_token, row], signed
    inputs: torch.Tensor  # [T, d_ff] float32, kept to explain spikes


@dataclass(frozen=True)
class Contribution:
    col: int
    contribution: float
    share: float


class Rule:
    """Which scale a layer's output is compared with to call it a spike."""

    EARLIER_LAYERS = "earlier_layers"  # the typical earlier layer's largest |output|
    WITHIN_LAYER = "within_layer"  # this layer's own median |output|


@dataclass(frozen=True)
class SpikeReference:
    """The scale a layer is judged against, and how many times it a spike must reach."""

    rule: str
    scale: float
    ratio: float

    @property
    def threshold(self) -> float:
        return self.ratio * self.scale


@dataclass(frozen=True)
class SpikeRow:
    row: int
    token: int
    value: float  # Y[token, row], signed
    ratio: float  # |value| / the reference scale


def _flat_argmax(matrix: torch.Tensor) -> tuple[float, int, int]:
    flat = int(matrix.argmax())
    token, channel = divmod(flat, matrix.shape[-1])
    return float(matrix.reshape(-1)[flat]), token, channel


def summarize(inputs: torch.Tensor, outputs: torch.Tensor) -> LayerActivity:
    """Summarize one down projection call (batch of one sequence: [1, T, *] or [T, *])."""
    x = inputs.reshape(-1, inputs.shape[-1]).float()
    signed = outputs.reshape(-1, outputs.shape[-1]).float()
    y = signed.abs()
    max_input, input_token, input_col = _flat_argmax(x.abs())
    max_output, output_token, output_row = _flat_argmax(y)
    quantiles = torch.quantile(
        y.view(-1), torch.tensor(PERCENTILES, dtype=y.dtype, device=y.device)
    )
    percentiles = {f"p{q * 100:g}": float(v) for q, v in zip(PERCENTILES, quantiles, strict=True)}
    row_max, row_token = y.max(dim=0)
    return LayerActivity(
        max_input=max_input,
        input_token=input_token,
        input_col=input_col,
        max_output=max_output,
        output_token=output_token,
        output_row=output_row,
        output_percentiles=percentiles,
        median_output=percentiles["p50"],
        row_max=row_max.cpu(),
        row_token=row_token.cpu(),
        row_value=signed.gather(0, row_token.unsqueeze(0)).squeeze(0).cpu(),
        inputs=x.cpu(),
    )


def typical_scale(previous_maxima: list[float]) -> float | None:
    """The typical layer's largest |output|, from the layers before this one that did not spike.

    The lower median of those layers' maxima: it only needs the layers already seen, so a spike
    can be recognised as its layer passes (the streamed sweep forks its ablations there), and a
    few large layers cannot raise it. None when there is no such layer (layer 0).
    """
    if not previous_maxima:
        return None
    ordered = sorted(previous_maxima)
    return ordered[(len(ordered) - 1) // 2]


def within_layer_ratio(activity: LayerActivity) -> float | None:
    """The layer's largest |output| over its own median |output| (None for a silent layer)."""
    return activity.max_output / activity.median_output if activity.median_output > 0 else None


def spike_reference(activity: LayerActivity, previous_maxima: list[float]) -> SpikeReference | None:
    """What the layer is judged against: the typical earlier layer when there is one, else the
    layer's own median output (layer 0, or a layer after nothing but spiking layers)."""
    typical = typical_scale(previous_maxima)
    if typical is not None and typical > 0:
        return SpikeReference(Rule.EARLIER_LAYERS, typical, SUPER_ACTIVATION_RATIO)
    if activity.median_output > 0:
        return SpikeReference(Rule.WITHIN_LAYER, activity.median_output, WITHIN_LAYER_RATIO)
    return None


def spike_rows(
    activity: LayerActivity, reference: SpikeReference | None, floor: float | None = None
) -> list[SpikeRow]:
    """Rows of this layer's output that reach the reference's threshold, strongest first.
    `floor` replaces the activity's own share of its maximum (a routed expert is one part of its
    layer: the layer's maximum sets the level)."""
    if reference is None:
        return []
    own = MIN_ROW_FRACTION_OF_LAYER_MAX * activity.max_output
    threshold = max(reference.threshold, own if floor is None else floor)
    rows = torch.nonzero(activity.row_max >= threshold).view(-1).tolist()
    rows.sort(key=lambda r: -float(activity.row_max[r]))
    return [
        SpikeRow(
            row=r,
            token=int(activity.row_token[r]),
            value=float(activity.row_value[r]),
            ratio=float(activity.row_max[r]) / reference.scale,
        )
        for r in rows[:MAX_SPIKE_ROWS_PER_LAYER]
    ]


def explain_spike(
    weight_row: torch.Tensor, inputs_at_token: torch.Tensor, output_value: float
) -> list[Contribution]:
    """The input channels whose contribution W[row, c] * X[t, c] carries the spike.

    `output_value` is the signed spiking output Y[t, row] (bias included); a column counts when
    its contribution has the spike's sign and at least MIN_CONTRIBUTION_SHARE of its size.
    """
    contributions = weight_row.float() * inputs_at_token.float()
    shares = contributions / output_value
    order = torch.argsort(shares, descending=True)[:MAX_WEIGHTS_PER_ROW]
    return [
        Contribution(col=int(c), contribution=float(contributions[c]), share=float(shares[c]))
        for c in order.tolist()
        if float(shares[c]) >= MIN_CONTRIBUTION_SHARE
    ]


@dataclass
class Observation:
    """One prompt's sighting of a candidate super weight."""

    prompt: int
    token: int
    output: float
    input: float
    contribution: float
    share: float
    ratio: float
    threshold: float
    rule: str = Rule.EARLIER_LAYERS

    def as_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "token": self.token,
            "super_activation": self.output,
            "input_activation": self.input,
            "contribution": self.contribution,
            "share": self.share,
            "spike_ratio": self.ratio,
            "spike_rule": self.rule,
        }


@dataclass
class Candidate:
    layer: int
    row: int
    col: int
    value: float  # W[row, col] as stored (exact in the compute dtype)
    observations: list[Observation]
    expert: int | None = None  # the routed expert whose down projection holds it

    @property
    def key(self) -> tuple[int, ...]:
        """(layer, row, col), and the expert after them for a weight inside a routed expert."""
        if self.expert is None:
            return (self.layer, self.row, self.col)
        return (self.layer, self.row, self.col, self.expert)

    @property
    def threshold(self) -> float:
        """Output level that counts as this row's super activation on other text."""
        return min(o.threshold for o in self.observations)


class DetectionState:
    """Per-prompt layer history and the candidates found so far, fed one layer at a time.

    The history of a prompt holds the largest |output| of every earlier layer that did not
    spike on it: the typical layer a later one is compared with.
    """

    def __init__(self, prompts: int):
        self.prompts = prompts
        self.history: list[list[float]] = [[] for _ in range(prompts)]
        self.profile: list[dict] = []
        self.candidates: dict[tuple[int, ...], Candidate] = {}
        # Mixture-of-experts layers: each routed expert's activity, and the experts that spike.
        self.expert_profile: list[dict] = []
        self.super_experts: dict[tuple[int, int], ExpertCandidate] = {}

    def observe_layer(
        self, layer: int, activities: list[LayerActivity], weight_out_in: torch.Tensor
    ) -> list[Candidate]:
        """Record one layer's activity on every prompt; return the candidates it reveals."""
        found: dict[tuple[int, ...], Candidate] = {}
        ratios = []
        for prompt, activity in enumerate(activities):
            typical = typical_scale(self.history[prompt])
            ratios.append(activity.max_output / typical if typical else None)
            reference = spike_reference(activity, self.history[prompt])
            spikes = spike_rows(activity, reference)
            _explain(layer, prompt, activity, spikes, reference, weight_out_in, found)
            if not spikes:
                self.history[prompt].append(activity.max_output)
        self.profile.append(_profile_entry(layer, activities, ratios, bool(found)))
        self.candidates.update(found)
        return sorted(found.values(), key=lambda c: (c.row, c.col))

    def observe_experts(
        self,
        layer: int,
        experts: list[dict[int, ExpertActivity]],
        expert_weight: Callable[[int], torch.Tensor],
        shared: list[LayerActivity] | None = None,
        shared_weight: torch.Tensor | None = None,
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Record one mixture-of-experts layer on every prompt: per prompt, each routed expert's
        activity on its own tokens (`experts`), and the shared expert's, if any. The layer is
        judged as a whole (its largest output against the typical earlier layer, or its own
        median), and every expert whose output reaches the threshold is explained with its own
        matrix (`expert_weight(e)`, viewed [out, in]). Returns (the shared expert's candidates,
        the routed experts' candidates); the super experts are kept in `self.super_experts`."""
        shared_found: dict[tuple[int, ...], Candidate] = {}
        found: dict[tuple[int, ...], Candidate] = {}
        combined = []
        ratios = []
        spiking = False
        for prompt, by_expert in enumerate(experts):
            parts = [a.at_positions() for a in by_expert.values()]
            if shared is not None:
                parts.append(shared[prompt])
            layer_activity = combine(parts)
            combined.append(layer_activity)
            typical = typical_scale(self.history[prompt])
            ratios.append(
                layer_activity.max_output / typical if typical and layer_activity else None
            )
            if layer_activity is None:
                continue
            reference = spike_reference(layer_activity, self.history[prompt])
            floor = MIN_ROW_FRACTION_OF_LAYER_MAX * layer_activity.max_output
            seen = False
            if shared is not None:
                assert shared_weight is not None  # a shared expert comes with its weight
                spikes = spike_rows(shared[prompt], reference, floor)
                _explain(
                    layer, prompt, shared[prompt], spikes, reference, shared_weight, shared_found
                )
                seen = bool(spikes)
            for expert, routed in sorted(by_expert.items()):
                spikes = spike_rows(routed.activity, reference, floor)
                if not spikes:
                    continue
                seen = True
                self._super_expert(layer, expert, prompt, routed, spikes)
                _explain(
                    layer,
                    prompt,
                    routed.activity,
                    spikes,
                    reference,
                    expert_weight(expert),
                    found,
                    expert=expert,
                    routed=routed,
                )
            spiking = spiking or seen
            if not seen:
                self.history[prompt].append(layer_activity.max_output)
        # The router sends every token to some expert: no prompt's activity is None here.
        self.profile.append(
            _profile_entry(layer, cast(list[LayerActivity], combined), ratios, spiking)
        )
        self.expert_profile.append(_expert_profile_entry(layer, experts))
        self.candidates.update(shared_found)
        self.candidates.update(found)
        order = lambda c: (c.expert if c.expert is not None else -1, c.row, c.col)  # noqa: E731
        return sorted(shared_found.values(), key=order), sorted(found.values(), key=order)

    def _super_expert(
        self, layer: int, expert: int, prompt: int, routed: ExpertActivity, spikes: list[SpikeRow]
    ) -> None:
        candidate = self.super_experts.setdefault((layer, expert), ExpertCandidate(layer, expert))
        for spike in spikes:
            candidate.observations.append(
                {
                    "prompt": prompt,
                    "token": spike.token,
                    "row": spike.row,
                    "max_abs_output": abs(spike.value),
                    "spike_ratio": spike.ratio,
                    "router_weight": routed.weight_at(spike.token),
                }
            )


def _prompt_entry(prompt: int, activity: LayerActivity, ratio: float | None) -> dict:
    """One prompt's view of one layer (`workers.contract.report.PromptProfile`)."""
    return {
        "prompt": prompt,
        "max_abs_input": activity.max_input,
        "input_token": activity.input_token,
        "input_col": activity.input_col,
        "max_abs_output": activity.max_output,
        "output_token": activity.output_token,
        "output_row": activity.output_row,
        "output_percentiles": activity.output_percentiles,
        "spike_ratio": ratio,
        "within_layer_ratio": within_layer_ratio(activity),
    }


def _profile_entry(
    layer: int, activities: list[LayerActivity], ratios: list[float | None], spike: bool
) -> dict:
    """The layer as the first prompt saw it, every prompt's maximum, and every prompt's entry."""
    prompts = [
        _prompt_entry(i, a, r) for i, (a, r) in enumerate(zip(activities, ratios, strict=True))
    ]
    first = {k: v for k, v in prompts[0].items() if k != "prompt"}
    return {
        "layer": layer,
        **first,
        "max_abs_output_per_prompt": [a.max_output for a in activities],
        "spike": spike,
        "prompts": prompts,
    }


def _explain(
    layer: int,
    prompt: int,
    activity: LayerActivity,
    spikes: list[SpikeRow],
    reference: SpikeReference | None,
    weight_out_in: torch.Tensor,
    found: dict[tuple[int, ...], Candidate],
    *,
    expert: int | None = None,
    routed: ExpertActivity | None = None,
) -> None:
    """The weights that carry each spike, added to `found` with this prompt's observation. Inside
    a routed expert the level that counts as the super activation on other text is the one the
    experts module emits: the spike times the router's weight at its token."""
    for spike in spikes:
        assert reference is not None  # a spike is a row above the reference
        x = activity.inputs[spike.token]
        scale = routed.weight_at(spike.token) if routed is not None else 1.0
        token = routed.position(spike.token) if routed is not None else spike.token
        for c in explain_spike(weight_out_in[spike.row], x, spike.value):
            candidate = Candidate(
                layer, spike.row, c.col, float(weight_out_in[spike.row, c.col]), [], expert
            )
            candidate = found.setdefault(candidate.key, candidate)
            candidate.observations.append(
                Observation(
                    prompt=prompt,
                    token=token,
                    output=spike.value,
                    input=float(x[c.col]),
                    contribution=c.contribution,
                    share=c.share,
                    ratio=spike.ratio,
                    threshold=reference.threshold * scale,
                    rule=reference.rule,
                )
            )


@dataclass
class ExpertActivity:
    """One routed expert's down projection on one prompt: its activity summarised over the rows
    of the tokens routed to it (`activity`'s tokens are those rows), their positions in the prompt
    and the router's weight of the expert at each."""

    expert: int
    activity: LayerActivity
    positions: torch.Tensor  # [n] token positions in the prompt
    weights: torch.Tensor  # [n] router weights

    def position(self, row: int) -> int:
        return int(self.positions[row])

    def weight_at(self, row: int) -> float:
        return float(self.weights[row])

    @property
    def tokens(self) -> int:
        return int(self.positions.numel())

    def at_positions(self) -> LayerActivity:
        """The activity with its tokens named by their positions in the prompt (for the layer's
        profile); its inputs stay the expert's rows."""
        a = self.activity
        return replace(
            a,
            input_token=self.position(a.input_token),
            output_token=self.position(a.output_token),
            row_token=self.positions[a.row_token],
        )


@dataclass
class ExpertCandidate:
    """A routed expert whose down projection emits a super activation: a super expert until
    pruning it says otherwise."""

    layer: int
    expert: int
    observations: list[dict] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.layer, self.expert)

    @property
    def strongest(self) -> dict:
        return max(self.observations, key=lambda o: o["max_abs_output"])


def summarize_expert(
    expert: int,
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    positions: torch.Tensor,
    weights: torch.Tensor,
) -> ExpertActivity:
    """One expert's rows (tokens routed to it) on one prompt."""
    return ExpertActivity(expert, summarize(inputs, outputs), positions, weights)


def combine(parts: list[LayerActivity]) -> LayerActivity | None:
    """A layer's activity from its parts (routed experts and a shared expert): the largest input
    and output over the parts, their rows' maxima, and the median over every part's outputs
    (approximated by the median of the parts' medians weighted equally: the parts' full outputs are
    not kept). None for a layer no token reached (no part)."""
    if not parts:
        return None
    top_in = max(parts, key=lambda a: a.max_input)
    top_out = max(parts, key=lambda a: a.max_output)
    stacked = torch.stack([a.row_max for a in parts])
    row_max, which = stacked.max(dim=0)
    row_token = torch.stack([a.row_token for a in parts]).gather(0, which.unsqueeze(0)).squeeze(0)
    row_value = torch.stack([a.row_value for a in parts]).gather(0, which.unsqueeze(0)).squeeze(0)
    medians = sorted(a.median_output for a in parts)
    return LayerActivity(
        max_input=top_in.max_input,
        input_token=top_in.input_token,
        input_col=top_in.input_col,
        max_output=top_out.max_output,
        output_token=top_out.output_token,
        output_row=top_out.output_row,
        output_percentiles={
            key: max(a.output_percentiles[key] for a in parts) for key in top_out.output_percentiles
        },
        median_output=medians[(len(medians) - 1) // 2],
        row_max=row_max,
        row_token=row_token,
        row_value=row_value,
        inputs=top_out.inputs,
    )


def _expert_profile_entry(layer: int, experts: list[dict[int, ExpertActivity]]) -> dict:
    """Every routed expert of the layer over every prompt (`workers.contract.report.ExpertProfile`):
    the tokens routed to it and its largest |output|, before the router's weighting."""
    numbers = sorted({e for by_expert in experts for e in by_expert})
    entries = []
    for expert in numbers:
        seen = [
            (p, by_expert[expert]) for p, by_expert in enumerate(experts) if expert in by_expert
        ]
        prompt, top = max(seen, key=lambda pair: pair[1].activity.max_output)
        entries.append(
            {
                "expert": expert,
                "tokens": sum(a.tokens for _, a in seen),
                "max_abs_output": top.activity.max_output,
                "output_row": top.activity.output_row,
                "output_token": top.position(top.activity.output_token),
                "prompt": prompt,
            }
        )
    return {"layer": layer, "experts": entries}
