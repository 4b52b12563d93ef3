"""The detection report: what `swreg detect --json` prints, what a worker hands the registry, what
the command-line table and the benchmark read. Defined once, here, and checked where it is made.

Numbers that an ablation can make infinite (perplexity) are plain floats here; in JSON they are
written as the strings "Infinity", "-Infinity" and "NaN" (strict JSON has no such numbers, and
PostgreSQL's JSONB refuses them), and read back from those strings.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, NonNegativeInt

# Fits the 32-bit integer columns of every database backend the registry runs on.
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
DetectedState = Literal["candidate", "verified", "rejected"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    def as_json_dict(self) -> dict[str, Any]:
        """As strict JSON values (non-finite numbers as strings)."""
        return json.loads(self.model_dump_json())


class WeightFile(_Part):
    name: str
    sha256: str | None = None
    size: NonNegativeInt | None = None


class ModelInfo(_Part):
    path: str
    model_type: str
    architecture: str | None = Field(default=None, max_length=255)
    dtype: str | None = Field(default=None, max_length=32)
    num_layers: Count
    d_model: int | None = None
    d_ff: int | None = None
    weight_files: list[WeightFile] = Field(default_factory=list)
    weight_bytes: NonNegativeInt


class Detector(_Part):
    name: str = "swreg"
    version: str = Field(max_length=64)
    device: str
    torch: str
    transformers: str
    python: str


class EvalInfo(_Part):
    """The evaluation text a verdict was measured on, and how it was cut to fit the model."""

    path: str
    sha256: str
    tokens: NonNegativeInt
    windows: NonNegativeInt
    window_tokens: NonNegativeInt | None = Field(
        default=None, description="the longest window scored, in tokens"
    )
    context_tokens: NonNegativeInt | None = Field(
        default=None,
        description="the model's context cap: no window or prompt is longer; null when the "
        "config names no limit",
    )
    context_source: str | None = Field(
        default=None,
        max_length=64,
        description="the config key that set the cap (e.g. max_position_embeddings, "
        "n_positions; a sliding window is no cap: see feed_forward.sliding_window)",
    )


class LayerFigures(_Part):
    """One layer's down projection on one prompt: its largest |input| and |output| with where
    they are, percentiles of |output|, and how far the largest |output| stands out."""

    max_abs_input: float
    input_token: Count
    input_col: Count
    max_abs_output: float
    output_token: Count
    output_row: Count
    output_percentiles: dict[str, float]
    spike_ratio: float | None = Field(
        description="max |output| over the typical earlier layer's (the lower median of the "
        "largest |output| of earlier layers that did not spike); null where there is none"
    )
    within_layer_ratio: float | None = Field(
        default=None,
        description="max |output| over this layer's own median |output|: how the layer is "
        "judged where spike_ratio is null (layer 0)",
    )


class PromptProfile(LayerFigures):
    """One prompt's view of one layer. One object per prompt, so that a new per-prompt figure
    is one more field of LayerFigures."""

    prompt: Count = Field(description="index into the report's prompts")


class LayerProfile(LayerFigures):
    """One layer's down projection as the first prompt saw it (the figures), plus every
    prompt's maximum and, in `prompts`, every prompt's full entry."""

    layer: Count
    max_abs_output_per_prompt: list[float]
    spike: bool
    prompts: list[PromptProfile] = Field(
        default_factory=list, description="per prompt (absent from reports made before it)"
    )


class Observation(_Part):
    """One prompt's sighting of a candidate."""

    prompt: Count
    token: Count
    super_activation: float
    input_activation: float
    contribution: float
    share: float
    spike_ratio: float = Field(description="|super activation| over the scale of spike_rule")
    spike_rule: Literal["earlier_layers", "within_layer"] = Field(
        default="earlier_layers",
        description="earlier_layers: against the typical earlier layer's largest |output|; "
        "within_layer: against this layer's median |output| (no typical earlier layer)",
    )


class DetectionEvidence(_Part):
    prompts: Count
    seen_in_prompts: list[Count]
    stability: float
    mean_share: float
    observations: list[Observation]


class Score(_Part):
    """A model run scored on the evaluation text."""

    perplexity: float
    mean_kl_from_baseline: float
    stop_word_probability: float
    tokens: NonNegativeInt


class RatioInterval(_Part):
    """A confidence interval for a perplexity ratio, from the per-token loss differences on the
    tokens scored (batch means of blocks of consecutive predictions; the method: README)."""

    low: float
    high: float
    confidence: float = Field(gt=0, lt=1, description="of this interval alone")
    blocks: Count = Field(description="block means it was computed from")


class ScoreVsBaseline(Score):
    ratio: float = Field(description="perplexity over the baseline's on the same tokens")
    interval: RatioInterval | None = None
    stopped_early: bool = Field(
        default=False,
        description="scored on fewer tokens than the evaluation budget: its verdict could no "
        "longer change",
    )


class ControlEvidence(ScoreVsBaseline):
    """A control's score; each control adds fields of its own (how many weights, which)."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="strings")


class SuperActivationWindow(_Part):
    """The spiking output on one evaluation window, before (baseline) and after (the variant)."""

    tokens: list[Count]
    before: list[float]
    after: list[float]


class SuperActivationEvidence(_Part):
    ablated: list[SuperActivationWindow]
    restored: list[SuperActivationWindow]


class Verdict(_Part):
    state: DetectedState
    reason: str


class ValidationEvidence(_Part):
    eval: EvalInfo
    baseline: Score
    ablated: ScoreVsBaseline
    restored: ScoreVsBaseline | None = Field(
        default=None, description="absent where zeroing it did not move perplexity"
    )
    zeroed_with: list[list[Count]] = Field(
        default_factory=list,
        description="indices (as stored) of the shadow weights zeroed together with it: the "
        "other rows its input channel feeds",
    )
    controls: dict[str, ControlEvidence]
    super_activation: SuperActivationEvidence
    verdict: Verdict


class Selection(_Part):
    """Where the candidate stood when its layer's candidates were ranked for validation."""

    rank: Count = Field(description="of its input channel among the layer's, 1 = strongest")
    ranked: Count = Field(description="input channels ranked in the layer")
    spike_share: float = Field(description="largest share of the layer's spike it carries")
    skipped: str | None = Field(default=None, description="why it was not validated")


class Evidence(_Part):
    rules: dict[str, int | float]
    prompts: list[str]
    code_version: str
    detection: DetectionEvidence
    selection: Selection | None = None
    validation: ValidationEvidence | None = None


class ValidationRun(_Part):
    """How much validation computed: the variants run and the tokens they were scored on."""

    mode: Literal["sequential", "exhaustive"]
    variants: Count
    variant_tokens: NonNegativeInt = Field(description="tokens scored, summed over variants")
    exhaustive_variant_tokens: NonNegativeInt = Field(
        description="what the same variants would have cost scored on the whole budget"
    )
    rounds: Count = Field(description="passes over the layers (streamed) or rounds of runs")


class Coordinate(_Part):
    """One scalar of the checkpoint, named as the checkpoint stores it, with its verdict.

    `index` is the position in `tensor` as stored, of whatever rank: [row, col] for an
    nn.Linear weight, [col, row] for a GPT-2 Conv1D, and for a fused expert tensor the
    three indices as stored ([expert, in, out] in gpt-oss and Llama 4, [expert, out, in] in
    Granite-MoE). `expert` names the routed expert (null for a dense layer and for a shared
    expert, whose module says so)."""

    tensor: str = Field(min_length=1, max_length=255)
    index: list[Count] = Field(min_length=1, max_length=4, description="position as stored")
    layer: Count
    module: str = Field(min_length=1, max_length=128)
    row: Count = Field(description="output channel: the residual dimension that spikes")
    col: Count = Field(description="input channel of the projection")
    expert: Count | None = Field(
        default=None, description="the routed expert it belongs to; null outside routed experts"
    )
    value: FiniteFloat | None = None
    dtype: str | None = Field(default=None, max_length=32)
    state: DetectedState
    evidence: Evidence


class ExpertActivity(_Part):
    """One routed expert's down projection in one layer, over every prompt: the tokens the
    router sent it and its largest |output| (before the router's weighting)."""

    expert: Count
    tokens: NonNegativeInt = Field(description="tokens routed to it, summed over the prompts")
    max_abs_output: float = Field(description="0 where no token reached it")
    output_row: Count | None = None
    output_token: Count | None = None
    prompt: Count | None = Field(default=None, description="the prompt of the largest |output|")


class ExpertProfile(_Part):
    """The routed experts of one layer: what the per-layer/per-expert plot draws."""

    layer: Count
    experts: list[ExpertActivity]


class ExpertValidation(_Part):
    """The ablation of a whole expert (still routed to, its output zero) against random experts
    of the same layer pruned the same way, scored like a weight's ablation."""

    eval: EvalInfo
    baseline: Score
    pruned: ScoreVsBaseline
    controls: dict[str, ControlEvidence]
    verdict: Verdict


class SuperExpert(_Part):
    """A routed expert whose down projection emits a super activation (Su et al., arXiv
    2507.23279): (layer, expert) with its own evidence."""

    layer: Count
    expert: Count
    module: str = Field(
        min_length=1, max_length=128, description="the experts' module, e.g. mlp.experts"
    )
    state: DetectedState
    max_abs_output: float
    spike_ratio: float | None = None
    row: Count | None = Field(default=None, description="the output channel that spikes")
    tokens_routed: NonNegativeInt = 0
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        description="detection (observations) and validation (ExpertValidation)",
    )


class FeedForwardInfo(_Part):
    """How the feed-forward output projection was found (structure or an override) and what it
    is: written into the evidence so that a coordinate can be re-derived."""

    found_by: Literal["structure", "override"]
    layers: str = Field(description="attribute path of the decoder layers")
    module: str = Field(description="the output projection inside a layer (dense layers)")
    layout: str = Field(description="linear, conv1d, fused_experts_out_in, fused_experts_in_out")
    input_form: str | None = Field(
        default=None, description="gated, ungated, fused_gate_up, interleaved"
    )
    experts: str | None = Field(default=None, description="the routed experts' module, if any")
    num_experts: Count | None = None
    shared_expert: str | None = None
    dense_layers: list[Count] = Field(
        default_factory=list, description="layers without routed experts in an MoE model"
    )
    mixers: list[str] = Field(
        default_factory=list, description="non-attention token mixers (hybrids)"
    )
    sliding_window: Count | None = Field(default=None, description="recorded, never a context cap")


class Report(_Part):
    model: ModelInfo
    detector: Detector
    rules: dict[str, int | float]
    prompts: list[str]
    eval: EvalInfo | None = None
    profile: list[LayerProfile]
    super_weights: list[Coordinate]
    super_experts: list[SuperExpert] = Field(default_factory=list)
    expert_profile: list[ExpertProfile] = Field(default_factory=list)
    feed_forward: FeedForwardInfo | None = None
    validation: ValidationRun | None = None
    timings: dict[str, float]
    bytes_read: NonNegativeInt

    def dumps(self) -> str:
        """The report as one JSON document, keys sorted (what `swreg detect --json` prints)."""
        return json.dumps(self.as_json_dict(), indent=2, sort_keys=True)
