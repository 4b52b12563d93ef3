"""Pydantic shapes: what the HTTP API returns (published in the OpenAPI document). What a worker
records is the contract's report (`workers.contract.report`)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

State = Literal["published", "candidate", "verified", "rejected", "retracted"]
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


class Provenance(BaseModel):
    citation: str | None = None
    detector_version: str | None = None
    reproduced_in: list[str] = Field(
        default_factory=list,
        description="Revisions at which a worker verified this published coordinate.",
    )
    retraction_reason: str | None = None
    retracted_at: Timestamp | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class SuperWeightOut(BaseModel):
    tensor: str = Field(examples=["model.layers.2.mlp.down_proj.weight"])
    index: list[int] = Field(
        description="Position in the tensor as stored.", examples=[[3968, 7003]]
    )
    layer: int
    module: str = Field(examples=["mlp.down_proj"])
    row: int = Field(description="Output channel (the residual dimension that spikes).")
    col: int = Field(description="Input channel of the projection.")
    value: float | None = Field(description="The value as stored; null when unknown.")
    dtype: str | None
    state: State
    evidence: dict[str, Any]
    provenance: Provenance


class RevisionOut(BaseModel):
    model_id: str
    revision: str
    revision_kind: RevisionKind
    architecture: str | None
    dtype: str | None
    num_layers: int | None
    weight_files: list[WeightFile]
    quantization_check: dict[str, Any] | None = Field(
        description="Perplexity of these weights under round-to-nearest quantization with and "
        "without the super weights kept in full precision (`swreg quantize-check`); null when "
        "no job ran the check.",
    )
    created_at: Timestamp | None
    updated_at: Timestamp | None
    super_weights: list[SuperWeightOut]


class ModelLookup(BaseModel):
    model_id: str
    revisions: list[RevisionOut]


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
    total: int
    limit: int
    offset: int
    items: list[ModelSummary]
