"""The quantization check's result: what `swreg quantize-check --json` prints, what a worker hands
the registry with a job's report (when the check is switched on), and what the API serves with
the model revision. Defined once, here."""

import json
from typing import Literal

from pydantic import Field

from workers.contract.report import Count, EvalInfo, Score, ScoreVsBaseline, _Part

Variant = Literal["absmax", "clip", "clip_keep"]
# Where the super weights that `clip_keep` keeps came from.
KeptFrom = Literal["registry", "index", "api", "detection", "given"]


class KeptWeight(_Part):
    """A super weight kept in full precision by the `clip_keep` variant."""

    tensor: str
    index: list[Count]
    layer: Count
    module: str
    row: Count
    col: Count
    value: float | None = None
    expert: Count | None = Field(
        default=None,
        description="the routed expert it belongs to (its module is then the fused experts "
        "parameter inside the layer, e.g. mlp.experts.down_proj); null outside routed experts",
    )


class ClipRuleInfo(_Part):
    """How each matrix's clipping threshold was chosen (one of the two is set)."""

    rms_multiple: float | None = Field(description="|w| clipped at this many times the RMS")
    quantile: float | None = Field(description="|w| clipped at this quantile of |w|")
    description: str


class QuantizedScore(ScoreVsBaseline):
    """The model with every selected weight quantized one way, scored on the evaluation text."""

    bits: int
    block: int | None = Field(description="input channels per block; null: whole rows")
    variant: Variant


class QuantizationCheck(_Part):
    method: str
    weights: Literal["all", "down_proj"] = Field(
        description="all: every linear weight of the decoder layers; down_proj: only the down "
        "projections"
    )
    matrices: Count = Field(description="how many weight matrices were quantized")
    clip_rule: ClipRuleInfo
    kept: list[KeptWeight]
    kept_from: KeptFrom
    eval: EvalInfo
    baseline: Score
    results: list[QuantizedScore]
    code_version: str
    device: str
    timings: dict[str, float]
    bytes_read: int

    def dumps(self) -> str:
        return json.dumps(self.as_json_dict(), indent=2, sort_keys=True)
