"""Finding super activations and the weights that cause them: pure functions over tensors.

For one layer and one prompt, the down projection maps X (tokens x d_ff) to Y (tokens x d_model).
A *super activation* is an entry of Y that stands orders of magnitude above the model's typical
layer; the *super weights* are the entries W[row, c] whose contributions W[row, c] * X[t, c]
make up most of that entry. Explaining the spike by contribution, not ranking weights by
magnitude, is what keeps a huge weight on a dead input channel from being reported.
"""

from dataclasses import dataclass

import torch

# A layer spikes when its largest |output| is at least this many times the typical layer's
# largest |output|: "orders of magnitude" (docs/method.md). On SmolLM2-135M the super activation is
# ~700x the typical layer and the largest non-spike layer ~45x, so 100 separates them with
# a factor of two on either side.
SUPER_ACTIVATION_RATIO = 100.0
# Where no earlier layer can serve as the typical one (layer 0, or a layer after nothing but
# spiking layers), a layer spikes when its largest |output| is at least this many times its own
# median |output|. 1,000 is the massive-activation criterion of Sun, Chen, Kolter, Liu,
# "Massive Activations in Large Language Models" (arXiv:2402.17762, 2024): about 1,000 times
# the median magnitude. On SmolLM2-135M (4 default prompts, docs/measurements.md) layer 0
# reaches 44-49x, 20x below; the super activations of layers 11 and 28 are 3,586-30,287x,
# 3.6x above; the largest layer without a spike (layer 2) reaches 923-1,122x.
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
    quantiles = torch.quantile(y.view(-1), torch.tensor(PERCENTILES, dtype=y.dtype, device=y.device))
    percentiles = {f"p{q * 100:g}": float(v) for q, v in zip(PERCENTILES, quantiles)}
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


def spike_rows(activity: LayerActivity, reference: SpikeReference | None) -> list[SpikeRow]:
    """Rows of this layer's output that reach the reference's threshold, strongest first."""
    if reference is None:
        return []
    threshold = max(reference.threshold, MIN_ROW_FRACTION_OF_LAYER_MAX * activity.max_output)
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

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.layer, self.row, self.col)

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
        self.candidates: dict[tuple[int, int, int], Candidate] = {}

    def observe_layer(
        self, layer: int, activities: list[LayerActivity], weight_out_in: torch.Tensor
    ) -> list[Candidate]:
        """Record one layer's activity on every prompt; return the candidates it reveals."""
        found: dict[tuple[int, int, int], Candidate] = {}
        ratios = []
        for prompt, activity in enumerate(activities):
            typical = typical_scale(self.history[prompt])
            ratios.append(activity.max_output / typical if typical else None)
            reference = spike_reference(activity, self.history[prompt])
            spikes = spike_rows(activity, reference)
            for spike in spikes:
                x = activity.inputs[spike.token]
                for c in explain_spike(weight_out_in[spike.row], x, spike.value):
                    key = (layer, spike.row, c.col)
                    if key not in found:
                        value = float(weight_out_in[spike.row, c.col])
                        found[key] = Candidate(layer, spike.row, c.col, value, [])
                    found[key].observations.append(
                        Observation(
                            prompt=prompt,
                            token=spike.token,
                            output=spike.value,
                            input=float(x[c.col]),
                            contribution=c.contribution,
                            share=c.share,
                            ratio=spike.ratio,
                            threshold=reference.threshold,
                            rule=reference.rule,
                        )
                    )
            if not spikes:
                self.history[prompt].append(activity.max_output)
        self.profile.append(_profile_entry(layer, activities, ratios, bool(found)))
        self.candidates.update(found)
        return sorted(found.values(), key=lambda c: (c.row, c.col))


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
    prompts = [_prompt_entry(i, a, r) for i, (a, r) in enumerate(zip(activities, ratios))]
    first = {k: v for k, v in prompts[0].items() if k != "prompt"}
    return {
        "layer": layer,
        **first,
        "max_abs_output_per_prompt": [a.max_output for a in activities],
        "spike": spike,
        "prompts": prompts,
    }
