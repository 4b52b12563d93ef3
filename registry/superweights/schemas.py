"""Pydantic shapes: what the HTTP API returns (published in the OpenAPI document). What a worker
records is the contract's report (`workers.contract.report`)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_serializer

from registry.superweights.lineage import MAX_FINE_TUNES

State = Literal["published", "reported", "candidate", "verified", "rejected", "retracted"]
RevisionKind = Literal["commit", "content", "unknown"]
# A full commit sha, a content hash of a local directory's weight files, or "unknown" (entries of
# the published index, whose exact revision the paper does not name).
REVISION_PATTERN = r"^(?:[0-9a-f]{40}|sha256:[0-9a-f]{64}|unknown)$"
Timestamp = str  # RFC 3339, UTC, whole seconds: "2024-11-12T08:00:00Z"
# Fits the 32-bit integer columns on every backend.
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]


class WeightFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    sha256: str | None = None
    size: NonNegativeInt | None = None


EXAMPLE_CITATION = (
    "Yu, Wang, Shan, Reed, Wan. The Super Weight in Large Language Models. arXiv:2411.07191 (2024)"
)


class Source(BaseModel):
    """One source that states a coordinate."""

    citation: str = Field(examples=[EXAMPLE_CITATION])
    locator: str | None = Field(default=None, description="Where in it: a table, a file.")
    statement: str | None = Field(default=None, description="What it says about this coordinate.")
    url: str | None = None


class Place(BaseModel):
    """Another place a source gives for the same weight, in the same model revision."""

    tensor: str
    index: list[int]


class ExpertPlace(BaseModel):
    """Another (layer, expert) a source gives for the same super expert, in the same revision."""

    layer: int
    expert: int


class Provenance(BaseModel):
    citation: str | None = None
    sources: list[Source] = Field(
        default_factory=list, description="Every source that states this coordinate."
    )
    disputed_with: list[Place] = Field(
        default_factory=list,
        description="Other places sources give for the same weight; not empty: disputed.",
    )
    detector_version: str | None = None
    reproduced_in: list[str] = Field(
        default_factory=list,
        description="Revisions at which a worker verified this published or reported coordinate.",
    )
    retraction_reason: str | None = None
    retracted_at: Timestamp | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class SuperWeightOut(BaseModel):
    tensor: str = Field(examples=["model.layers.2.mlp.down_proj.weight"])
    index: list[int] = Field(
        description="Position in the tensor as stored, of any rank: [row, col] for a linear "
        "weight, [col, row] for a GPT-2 Conv1D, and in a fused tensor of all experts the "
        "expert first, then the two indices in the order the checkpoint stores them.",
        examples=[[3968, 7003], [2, 1764, 1710]],
    )
    layer: int
    module: str = Field(examples=["mlp.down_proj", "mlp.experts.down_proj"])
    row: int = Field(description="Output channel (the residual dimension that spikes).")
    col: int = Field(description="Input channel of the projection.")
    expert: int | None = Field(
        default=None,
        description="The routed expert the weight belongs to; null in dense layers and shared "
        "experts (and in index documents of schema version 1).",
    )
    value: float | None = Field(description="The value as stored; null when unknown.")
    dtype: str | None
    state: State
    evidence: dict[str, Any]
    provenance: Provenance


NonFinite = Literal["Infinity", "-Infinity", "NaN"]


class ExpertProvenance(Provenance):
    disputed_with: list[ExpertPlace] = Field(  # type: ignore[assignment]
        default_factory=list,
        description="Other (layer, expert) places sources give for the same super expert; not "
        "empty: disputed.",
    )


class SuperExpertOut(BaseModel):
    """A routed expert whose down projection emits a super activation (Su et al., arXiv
    2507.23279), named by (layer, expert), with its verdict, evidence and provenance."""

    layer: int
    expert: int
    module: str = Field(examples=["mlp.experts"])
    state: State
    max_abs_output: float | NonFinite | None = Field(
        default=None, description="Its largest |down-projection output|; null when not known."
    )
    spike_ratio: float | NonFinite | None = None
    row: int | None = Field(default=None, description="The output channel that spikes.")
    tokens_routed: int | None = Field(default=None, description="Tokens routed to it.")
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        description="Detection (observations) and validation: the expert pruned (routed to, "
        "output zero) against random experts of the same layer.",
    )
    provenance: ExpertProvenance = Field(default_factory=ExpertProvenance)


class ProfileOut(BaseModel):
    """The per-layer profile of the detection run that recorded a revision (the JSON index
    schema's `profile`). Each layer is a `LayerProfile` of the detection report: the largest
    |input| and |output| of its down projection with their channel and token, the spike ratio
    and |output| percentiles, for the first prompt and, in `prompts`, for each prompt."""

    detector_version: str | None = None
    prompts: list[str]
    super_activation_ratio: float | NonFinite | None = None
    layers: list[dict[str, Any]]
    experts: list[dict[str, Any]] | None = Field(
        default=None,
        description="Mixture-of-experts models only: per layer with routed experts, each "
        "expert's routed tokens and largest |down-projection output| (`ExpertProfile`).",
    )

    @model_serializer(mode="wrap")
    def _without_absent_experts(self, handler):
        # A dense revision's stored profile has no `experts` key: written back as it was stored,
        # so a parsed index answers exactly what the API serves.
        data = handler(self)
        if self.experts is None:
            data.pop("experts", None)
        return data


Outcome = Literal["kept", "lost", "undecided", "absent"]


class LineageCoordinateOut(BaseModel):
    """One of the base's verified coordinates, checked in this fine-tune
    (`workers.contract.lineage.LineageCoordinate`)."""

    tensor: str
    index: list[int]
    layer: int
    module: str
    row: int
    col: int
    expert: int | None = None
    outcome: Outcome = Field(
        description="kept: zeroing it here is verified to break the model; lost: it is here "
        "but zeroing it does not (rejected); undecided: neither shown nor ruled out; absent: "
        "the fine-tune has no such weight."
    )
    reason: str
    checked_by: Literal["detection", "lineage"] | None = Field(
        default=None,
        description="detection: this job's own detection judged it; lineage: the lineage "
        "check ablated it; null when absent.",
    )
    value: float | NonFinite | None = Field(default=None, description="Its value here.")
    base_value: float | NonFinite | None = Field(default=None, description="Its value in the base.")
    ratio: float | NonFinite | None = Field(
        default=None, description="How many times zeroing it here multiplies perplexity."
    )
    interval: dict[str, Any] | None = Field(
        default=None, description="The ratio's confidence interval (low, high, confidence)."
    )
    base_ratio: float | NonFinite | None = Field(
        default=None, description="How many times zeroing it multiplied the base's perplexity."
    )
    validation: dict[str, Any] | None = Field(
        default=None,
        description="The ablation here with its controls and verdict, as a coordinate's "
        "validation evidence; null when absent.",
    )


class LineageExpertOut(BaseModel):
    """One of a mixture-of-experts base's verified super experts, checked in this fine-tune
    (`workers.contract.lineage.LineageExpert`)."""

    layer: int
    expert: int
    module: str
    outcome: Outcome = Field(
        description="kept: pruning it here is verified to break the model; lost: it is here but "
        "pruning it does not (rejected); undecided: neither shown nor ruled out; absent: the "
        "fine-tune has no such expert."
    )
    reason: str
    checked_by: Literal["detection", "lineage"] | None = Field(
        default=None,
        description="detection: this job's own detection judged it; lineage: the lineage "
        "check pruned it; null when absent.",
    )
    ratio: float | NonFinite | None = Field(
        default=None, description="How many times pruning it here multiplies perplexity."
    )
    interval: dict[str, Any] | None = Field(
        default=None, description="The ratio's confidence interval (low, high, confidence)."
    )
    base_ratio: float | NonFinite | None = Field(
        default=None, description="How many times pruning it multiplied the base's perplexity."
    )
    validation: dict[str, Any] | None = Field(
        default=None,
        description="The pruning here with its controls and verdict, as a super expert's "
        "validation evidence; null when absent.",
    )


class LineageCheckOut(BaseModel):
    """Whether this fine-tune keeps its base's verified super weights (and a mixture-of-experts
    base's verified super experts), each checked by ablation in these weights and recorded as
    this revision's own evidence."""

    base_model: str
    base_revision: str = Field(description="The base revision whose coordinates were checked.")
    detector_version: str
    coordinates: list[LineageCoordinateOut]
    super_experts: list[LineageExpertOut] | None = Field(
        default=None,
        description="The base's verified super experts, each pruned here; absent when the base "
        "has none.",
    )

    @property
    def kept(self) -> int:
        return sum(c.outcome == "kept" for c in self.coordinates)

    @property
    def kept_experts(self) -> int:
        return sum(e.outcome == "kept" for e in self.super_experts or [])

    @model_serializer(mode="wrap")
    def _without_absent_experts(self, handler):
        # Present only when the base has super experts, as the stored check has them.
        data = handler(self)
        if self.super_experts is None:
            data.pop("super_experts", None)
        return data


class RevisionOut(BaseModel):
    model_id: str
    revision: str
    revision_kind: RevisionKind
    architecture: str | None
    dtype: str | None
    num_layers: int | None
    weight_files: list[WeightFile]
    profile: ProfileOut | None = Field(
        default=None, description="Null for revisions no detector ran on (published entries)."
    )
    quantization_check: dict[str, Any] | None = Field(
        description="Perplexity of these weights under round-to-nearest quantization with and "
        "without the super weights kept in full precision (`swreg quantize-check`); null when "
        "no job ran the check.",
    )
    created_at: Timestamp | None
    updated_at: Timestamp | None
    super_weights: list[SuperWeightOut]
    super_experts: list[SuperExpertOut] = Field(
        default_factory=list,
        description="Routed experts whose down projection emits a super activation.",
    )
    base_model: str | None = Field(
        default=None,
        description="The base model this revision's model card names (`base_model:` of its "
        "README.md at this revision); absent when it names none, several (a merge) or an "
        "invalid id.",
    )
    lineage_check: LineageCheckOut | None = Field(
        default=None,
        description="The base's verified super weights checked by ablation in these weights; "
        "absent when no job ran the check (no base, or a base without verified coordinates).",
    )

    @model_serializer(mode="wrap")
    def _without_absent_lineage(self, handler):
        # Present only when known, as the registry's revision document has them.
        data = handler(self)
        for name in ("base_model", "lineage_check"):
            if getattr(self, name) is None:
                data.pop(name, None)
        return data


class FineTuneOut(BaseModel):
    """A model whose revisions name this one as their base."""

    model_id: str
    revision: str = Field(description="Its most recently updated revision that names the base.")
    kept: int | None = Field(
        default=None,
        description="How many of the base's verified super weights that revision keeps; null "
        "when no lineage check ran.",
    )
    checked: int | None = Field(
        default=None, description="How many the check looked for; null when none ran."
    )


class LineageOut(BaseModel):
    """A model's lineage: the bases it was fine-tuned from, the fine-tunes the registry holds."""

    base_models: list[str] = Field(
        default_factory=list, description="The base models its revisions' cards name."
    )
    fine_tunes: list[FineTuneOut] = Field(
        default_factory=list,
        description=f"Models whose revisions name it as their base, by id (at most "
        f"{MAX_FINE_TUNES}).",
    )
    fine_tunes_total: int = Field(default=0, description="How many such models there are.")


class ModelLookup(BaseModel):
    model_id: str
    revisions: list[RevisionOut]
    lineage: LineageOut = Field(default_factory=LineageOut)


class RevisionMatches(BaseModel):
    """Every model revision recorded at one revision, under any model id (a local directory's
    content hash may be recorded under several)."""

    revision: str
    revisions: list[RevisionOut]


class ModelSummary(BaseModel):
    model_id: str
    revisions: list[str]
    super_weights: int
    states: dict[str, int]


class ModelPage(BaseModel):
    """One page of the model list, in binary (code point) order of the model ids. The next page
    is `?after=` this page's `next`."""

    total: int = Field(description="Models in the list (those matching `q`, when given).")
    limit: int
    offset: int = Field(description="Deprecated (the `offset` asked for; 0 when none was).")
    items: list[ModelSummary]
    next: str | None = Field(
        default=None,
        description="The cursor of the next page (pass it as `after`): the last model id of "
        "this page; null on the last page.",
        examples=["huggyllama/llama-7b", None],
    )
