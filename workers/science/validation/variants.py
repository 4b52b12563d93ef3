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
    PRUNE = "prune"  # a routed expert pruned: still routed to, its output zero
    PRUNE_CONTROL = "control_prune"  # a random other expert of the layer pruned the same way

    @staticmethod
    def control(name: str) -> str:
        return f"control_{name}"


@dataclass
class VariantPlan:
    kind: str
    layer: int
    zeroed: list[Coordinate]
    # (layer, row, col) of the candidates it judges: one, or a shadow group (ablate only).
    candidates: tuple[tuple[int, ...], ...] = ()  # candidate keys (layer, row, col[, expert])
    restore_row: int | None = None
    # Spiking rows whose output is recorded before and after, each with the output level that
    # counts as its super activation on the evaluation text.
    watch: dict[int, float] = field(default_factory=dict)
    # Filled while the variant passes its layer: per watched row, the output before and after,
    # one entry per evaluation window.
    super_activation: dict[int, list[dict]] = field(default_factory=dict)
    # The routed expert whose down projection `zeroed` addresses (None: the layer's dense or
    # shared-expert projection).
    expert: int | None = None
    # Routed experts pruned (prune variants and their controls).
    pruned: list[int] = field(default_factory=list)

    @property
    def routed(self) -> bool:
        """Whether it changes the layer's routed experts (not its dense projection)."""
        return self.expert is not None or bool(self.pruned)

    @property
    def name(self) -> str:
        where = f"{self.layer}" if self.expert is None else f"{self.layer}/e{self.expert}"
        if self.pruned:
            return f"{self.kind}@{self.layer}:experts " + "+".join(map(str, self.pruned))
        if not self.candidates:
            return f"{self.kind}@{where}"
        return f"{self.kind}@{where}:" + "+".join(f"{r},{c}" for r, c in self.zeroed)


def ablation_plan(unit: Unit) -> VariantPlan:
    return VariantPlan(
        Kind.ABLATE,
        unit.layer,
        unit.coordinates,
        tuple(c.key for c in unit.members),
        watch={c.row: c.threshold for c in unit.members},
        expert=unit.expert,
    )


def restore_plan(candidate: Candidate) -> VariantPlan:
    return VariantPlan(
        Kind.RESTORE,
        candidate.layer,
        [(candidate.row, candidate.col)],
        (candidate.key,),
        restore_row=candidate.row,
        watch={candidate.row: candidate.threshold},
        expert=candidate.expert,
    )


def control_plans(
    layer: int, weight_out_in: torch.Tensor, exclude: set[Coordinate], expert: int | None = None
) -> list[VariantPlan]:
    """Every control of one tensor (a routed expert's own matrix inside an MoE layer), none of
    them zeroing a candidate of the layer. Seeded per layer and expert."""
    seed_layer = layer if expert is None else layer * EXPERT_SEED_STRIDE + expert
    return [
        VariantPlan(
            Kind.control(control.name),
            layer,
            control.coordinates(weight_out_in, exclude, seed_layer),
            expert=expert,
        )
        for control in CONTROLS
    ]


# Random controls are seeded per layer (`RandomControl.seed`); inside an MoE layer per (layer,
# expert), as layer * stride + expert: no model has this many experts in one layer.
EXPERT_SEED_STRIDE = 100_000


def prune_plan(layer: int, expert: int) -> VariantPlan:
    return VariantPlan(Kind.PRUNE, layer, [], pruned=[expert])


def prune_control_plan(layer: int, expert: int) -> VariantPlan:
    return VariantPlan(Kind.PRUNE_CONTROL, layer, [], pruned=[expert])
