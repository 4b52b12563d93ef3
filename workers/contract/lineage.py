"""The lineage check: whether a fine-tune keeps the super weights its base model has verified in
the registry, each checked by ablation in the fine-tune's own weights with the verdict rule of
detection. What a worker hands the registry with a job's report (when the revision's model card
names a base with verified coordinates) and what the API serves with the revision. Defined
once, here; the method: docs/method.md#lineage.

Each of the base's verified coordinates gets an outcome:

- `kept`: zeroing it in the fine-tune is verified to break the model (the verdict `verified`);
- `lost`: it is there, but zeroing it is not what breaks the model (the verdict `rejected`:
  ablation does not reach the threshold, or a control shows the tensor too fragile);
- `undecided`: the verdict is `candidate` (the interval straddles the threshold, a control
  leaves a doubt): neither shown nor ruled out;
- `absent`: the fine-tune has no such weight (no such tensor, an index outside it, or its layer
  stored elsewhere): nothing to ablate.

A mixture-of-experts base's verified super experts are checked the same way, each pruned in the
fine-tune (still routed to, its output zero) against random routed experts pruned alike, with the
verdict rule of detection's own super experts: `kept`, `lost`, `undecided`, or `absent` (no such
layer of routed experts, or no such expert).
"""

import json
from typing import Any, Literal

from pydantic import Field

from workers.contract.report import (
    Count,
    ExpertValidation,
    RatioInterval,
    ValidationEvidence,
    _Part,
)

Outcome = Literal["kept", "lost", "undecided", "absent"]
OUTCOMES: tuple[Outcome, ...] = ("kept", "lost", "undecided", "absent")
# Which verdict gives which outcome.
OUTCOME_OF_STATE: dict[str, Outcome] = {
    "verified": "kept",
    "rejected": "lost",
    "candidate": "undecided",
}
# Where a coordinate's verdict came from: the job's own detection, which found and judged the
# same weight, or the lineage check's ablation of a weight detection did not judge.
CheckedBy = Literal["detection", "lineage"]


class BaseCoordinate(_Part):
    """One verified super weight of the base model, as the registry records it: what the check
    looks for in the fine-tune."""

    tensor: str = Field(min_length=1, max_length=255)
    index: list[Count] = Field(min_length=1, max_length=4)
    layer: Count
    module: str = Field(min_length=1, max_length=128)
    row: Count
    col: Count
    expert: Count | None = None
    value: float | None = Field(default=None, description="its value in the base")
    ratio: float | None = Field(
        default=None, description="how many times zeroing it multiplied the base's perplexity"
    )


class BaseExpert(_Part):
    """One verified super expert of a mixture-of-experts base, as the registry records it."""

    layer: Count
    expert: Count
    module: str = Field(min_length=1, max_length=128)
    ratio: float | None = Field(
        default=None, description="how many times pruning it multiplied the base's perplexity"
    )


class LineageBase(_Part):
    """The base model revision whose verified coordinates (and super experts) are checked."""

    model_id: str = Field(min_length=1, max_length=255)
    revision: str = Field(min_length=1, max_length=80)
    coordinates: list[BaseCoordinate]
    super_experts: list[BaseExpert] = Field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether there is anything to check."""
        return bool(self.coordinates or self.super_experts)


class LineageCoordinate(_Part):
    """One of the base's verified coordinates, checked in the fine-tune."""

    tensor: str = Field(description="the tensor as the base stores it")
    index: list[Count] = Field(description="the position in it as the base stores it")
    layer: Count
    module: str
    row: Count
    col: Count
    expert: Count | None = None
    outcome: Outcome
    reason: str = Field(description="the verdict's reason, or why the weight is absent")
    checked_by: CheckedBy | None = Field(
        default=None,
        description="detection: the job's own detection found and judged this weight; lineage: "
        "the lineage check ablated it; null when absent",
    )
    value: float | None = Field(default=None, description="its value in the fine-tune")
    base_value: float | None = Field(default=None, description="its value in the base")
    ratio: float | None = Field(
        default=None,
        description="how many times zeroing it multiplies the fine-tune's perplexity",
    )
    interval: RatioInterval | None = Field(default=None, description="the ratio's interval")
    base_ratio: float | None = Field(
        default=None, description="how many times zeroing it multiplied the base's perplexity"
    )
    validation: ValidationEvidence | None = Field(
        default=None,
        description="the ablation in the fine-tune with its controls and verdict, as a "
        "coordinate's validation evidence; null when absent",
    )


class LineageExpert(_Part):
    """One of the base's verified super experts, checked in the fine-tune."""

    layer: Count
    expert: Count
    module: str
    outcome: Outcome
    reason: str = Field(description="the verdict's reason, or why the expert is absent")
    checked_by: CheckedBy | None = Field(
        default=None,
        description="detection: the job's own detection found and judged this super expert; "
        "lineage: the lineage check pruned it; null when absent",
    )
    ratio: float | None = Field(
        default=None,
        description="how many times pruning it multiplies the fine-tune's perplexity",
    )
    interval: RatioInterval | None = Field(default=None, description="the ratio's interval")
    base_ratio: float | None = Field(
        default=None, description="how many times pruning it multiplied the base's perplexity"
    )
    validation: ExpertValidation | None = Field(
        default=None,
        description="the pruning in the fine-tune with its controls and verdict, as a super "
        "expert's validation evidence; null when absent or not pruned",
    )


class LineageCheck(_Part):
    """The lineage check of one fine-tune revision against its base's verified coordinates
    and, for a mixture-of-experts base that has some, its verified super experts."""

    base_model: str
    base_revision: str = Field(description="the base revision whose coordinates were checked")
    detector_version: str = Field(max_length=64)
    coordinates: list[LineageCoordinate]
    super_experts: list[LineageExpert] | None = Field(
        default=None,
        description="the base's verified super experts, checked; absent when it has none",
    )

    def count(self, outcome: Outcome) -> int:
        return sum(c.outcome == outcome for c in self.coordinates)

    def count_experts(self, outcome: Outcome) -> int:
        return sum(e.outcome == outcome for e in self.super_experts or [])

    def as_json_dict(self) -> dict[str, Any]:
        # Written only when the base has super experts: a dense model's check is as it was.
        data = super().as_json_dict()
        if self.super_experts is None:
            data.pop("super_experts")
        return data

    def dumps(self) -> str:
        return json.dumps(self.as_json_dict(), indent=2, sort_keys=True)
