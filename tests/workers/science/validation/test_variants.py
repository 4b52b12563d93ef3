"""The variant plans: what each zeroes, in which layer, what it puts back and what it watches."""

import torch

from tests.helpers import candidate
from workers.science.validation.controls import CONTROLS
from workers.science.validation.selection import select
from workers.science.validation.variants import (
    Kind,
    VariantPlan,
    ablation_plan,
    control_plans,
    restore_plan,
)


def test_an_ablation_zeroes_its_unit_and_watches_each_rows_spike():
    rows = [candidate(r, 9, 900.0 - r, 1000.0, layer=5) for r in (1, 2)]
    for c, threshold in zip(rows, (40.0, 60.0), strict=True):
        c.observations[0].threshold = threshold
    plan = ablation_plan(select(rows).ablated[0])
    assert plan == VariantPlan(
        Kind.ABLATE, 5, [(1, 9), (2, 9)], ((5, 1, 9), (5, 2, 9)), watch={1: 40.0, 2: 60.0}
    )
    assert plan.name == "ablate@5:1,9+2,9"


def test_a_restore_zeroes_the_weight_and_puts_its_row_back():
    weight = candidate(4, 2, 700.0, 1000.0, layer=6)
    assert restore_plan(weight) == VariantPlan(
        Kind.RESTORE, 6, [(4, 2)], ((6, 4, 2),), restore_row=4, watch={4: 50.0}
    )


def test_each_control_plans_its_own_weights_in_the_layer():
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    plans = control_plans(2, weight, {(5, 1)})
    assert [(p.kind, p.layer) for p in plans] == [(Kind.control(c.name), 2) for c in CONTROLS]
    assert [p.zeroed for p in plans] == [c.coordinates(weight, {(5, 1)}, 2) for c in CONTROLS]
    assert [p.name for p in plans] == ["control_random@2", "control_top_k@2"]
