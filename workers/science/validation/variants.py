"""The runs that judge the candidates of one layer: each candidate zeroed, each candidate zeroed
with its super activation put back, and every control of the tensor once."""

from dataclasses import dataclass, field

import torch

from workers.science.validation.controls import CONTROLS, Coordinate


class Kind:
    ABLATE = "ablate"  # the candidate zeroed
    RESTORE = "restore"  # the candidate zeroed, its super activation put back

    @staticmethod
    def control(name: str) -> str:
        return f"control_{name}"


@dataclass
class VariantPlan:
    kind: str
    layer: int
    zeroed: list[Coordinate]
    candidate: tuple[int, int, int] | None = None  # (layer, row, col) for ablate/restore
    restore_row: int | None = None
    # Filled while the variant passes its layer: the spiking output before and after, per window.
    super_activation: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.candidate is None:
            return f"{self.kind}@{self.layer}"
        return f"{self.kind}@{self.layer}:{self.candidate[1]},{self.candidate[2]}"


def plan_variants(
    layer: int, candidates: list[Coordinate], weight_out_in: torch.Tensor
) -> list[VariantPlan]:
    """Every run needed to judge the candidates of one layer (they share one tensor)."""
    if not candidates:
        return []
    plans = []
    for row, col in candidates:
        key = (layer, row, col)
        plans.append(VariantPlan(Kind.ABLATE, layer, [(row, col)], key))
        plans.append(VariantPlan(Kind.RESTORE, layer, [(row, col)], key, restore_row=row))
    exclude = set(candidates)
    for control in CONTROLS:
        zeroed = control.coordinates(weight_out_in, exclude, layer)
        plans.append(VariantPlan(Kind.control(control.name), layer, zeroed))
    return plans
