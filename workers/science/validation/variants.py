"""The runs that judge the candidates of one layer: each unit zeroed (one candidate, or the
shadow rows of one input channel together), a candidate zeroed with its super activation put
back (only where zeroing it moved the model), and every control of the tensor once, shared by
all its candidates."""

from dataclasses import dataclass, field

import torch

from workers.science.detection import Candidate
from workers.science.validation.controls import CONTROLS, Coordinate
from workers.science.validation.selection import Unit


class Kind:
    ABLATE = "ablate"  # a unit zeroed
    RESTORE = "restore"  # a candidate zeroed, its super activation put back

    @staticmethod
    def control(name: str) -> str:
        return f"control_{name}"


@dataclass
class VariantPlan:
    kind: str
    layer: int
    zeroed: list[Coordinate]
    # (layer, row, col) of the candidates it judges: one, or a shadow group (ablate only).
    candidates: tuple[tuple[int, int, int], ...] = ()
    restore_row: int | None = None
    # Spiking rows whose output is recorded before and after, each with the output level that
    # counts as its super activation on the evaluation text.
    watch: dict[int, float] = field(default_factory=dict)
    # Filled while the variant passes its layer: per watched row, the output before and after,
    # one entry per evaluation window.
    super_activation: dict[int, list[dict]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if not self.candidates:
            return f"{self.kind}@{self.layer}"
        return f"{self.kind}@{self.layer}:" + "+".join(f"{r},{c}" for r, c in self.zeroed)


def ablation_plan(unit: Unit) -> VariantPlan:
    return VariantPlan(
        Kind.ABLATE,
        unit.layer,
        unit.coordinates,
        tuple(c.key for c in unit.members),
        watch={c.row: c.threshold for c in unit.members},
    )


def restore_plan(candidate: Candidate) -> VariantPlan:
    return VariantPlan(
        Kind.RESTORE,
        candidate.layer,
        [(candidate.row, candidate.col)],
        (candidate.key,),
        restore_row=candidate.row,
        watch={candidate.row: candidate.threshold},
    )


def control_plans(
    layer: int, weight_out_in: torch.Tensor, exclude: set[Coordinate]
) -> list[VariantPlan]:
    """Every control of one tensor, none of them zeroing a candidate of the layer."""
    return [
        VariantPlan(Kind.control(control.name), layer, control.coordinates(weight_out_in, exclude, layer))
        for control in CONTROLS
    ]
