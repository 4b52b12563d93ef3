"""The controls: all of them listed, the constants they report, the weights they zero (drawn
reproducibly, distinct, never a candidate), what they keep, and where they veto or doubt."""

import importlib
import math
import pkgutil

import torch

from workers.science.validation import controls
from workers.science.validation.controls import CONTROLS, Control, control_rules
from workers.science.validation.controls.random import (
    CONTROL_SEED,
    MAX_RANDOM_CONTROL_RATIO,
    RANDOM_CONTROL_WEIGHTS,
    RandomControl,
    random_coordinates,
)
from workers.science.validation.controls.top_k import (
    ROWS_PER_BLOCK,
    TOP_K_CONTROL_WEIGHTS,
    TopKControl,
    largest,
)
from workers.science.validation.statistics import Interval


def _log_interval(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high, 0.98, 8, 256)


def test_the_list_holds_every_control_of_the_package_ordered_by_name():
    """The explicit list forgets no control: every `Control` subclass defined in a module of the
    package is in it, once."""
    defined = set()
    for module in pkgutil.iter_modules(controls.__path__):
        namespace = vars(importlib.import_module(f"{controls.__name__}.{module.name}"))
        defined |= {
            value
            for value in namespace.values()
            if isinstance(value, type) and issubclass(value, Control) and value is not Control
        }
    assert [type(c) for c in CONTROLS] == [RandomControl, TopKControl]
    assert {type(c) for c in CONTROLS} == defined
    assert [c.name for c in CONTROLS] == sorted(c.name for c in CONTROLS) == ["random", "top_k"]


def test_the_controls_report_their_constants():
    assert control_rules() == {
        "random_control_weights": RANDOM_CONTROL_WEIGHTS,
        "max_random_control_ratio": MAX_RANDOM_CONTROL_RATIO,
        "top_k_control_weights": TOP_K_CONTROL_WEIGHTS,
    }


def test_random_coordinates_are_distinct_and_never_excluded():
    # All but one weight of a 4x5 tensor: the draw has to reject repeats to fill the count.
    drawn = random_coordinates(4, 5, {(0, 0)}, 19, torch.Generator().manual_seed(1))
    assert len(drawn) == 19
    assert sorted(drawn) == [(r, c) for r in range(4) for c in range(5) if (r, c) != (0, 0)]
    # Half of a 10x10 tensor: a batch of draws repeats itself, and the count is still exact.
    half = random_coordinates(10, 10, set(), 50, torch.Generator().manual_seed(2))
    assert len(half) == len(set(half)) == 50


def test_the_random_control_draws_the_same_weights_for_a_layer_and_others_for_another():
    weight = torch.zeros(64, 128)
    control = RandomControl()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        first = control.coordinates(weight, set(), layer=3)
        torch.manual_seed(1)  # the global generator plays no part
        assert control.coordinates(weight, set(), layer=3) == first
    assert control.coordinates(weight, set(), layer=4) != first
    assert first == random_coordinates(
        64, 128, set(), RANDOM_CONTROL_WEIGHTS, torch.Generator().manual_seed(CONTROL_SEED + 3)
    )


def test_the_random_control_keeps_its_count_and_seed():
    zeroed = [(1, 2), (3, 4)]
    assert RandomControl().details(zeroed, 7, lambda r, c: (r, c)) == {
        "weights": 2,
        "seed": CONTROL_SEED + 7,
    }


def test_the_random_control_vetoes_only_a_rise_its_interval_shows():
    at = math.log(MAX_RANDOM_CONTROL_RATIO)
    control = RandomControl()
    assert control.veto(_log_interval(at, at + 0.1)) is None  # low end at the ratio: not above
    assert "too fragile" in control.veto(_log_interval(at + 1e-6, at + 0.1))


def test_the_random_control_doubts_only_what_it_neither_shows_nor_rules_out():
    at = math.log(MAX_RANDOM_CONTROL_RATIO)
    control = RandomControl()
    assert control.doubt(_log_interval(-0.01, at)) is None  # high end at the ratio: ruled out
    assert "neither shows nor rules out" in control.doubt(_log_interval(-0.01, at + 1e-6))
    assert control.doubt(_log_interval(at + 1e-6, at + 0.1)) is None  # a veto, not a doubt


def test_the_largest_weights_are_found_across_blocks_of_rows():
    weight = torch.randn(3 * ROWS_PER_BLOCK - 68, 90, generator=torch.Generator().manual_seed(5))
    weight[2 * ROWS_PER_BLOCK + 7, 11] = 50.0  # in the last block
    weight[ROWS_PER_BLOCK + 1, 0] = -40.0  # in the second
    whole = torch.topk(weight.abs().reshape(-1), 25).indices
    found = largest(weight, 25)
    assert found == [divmod(int(i), 90) for i in whole]
    assert found[:2] == [(2 * ROWS_PER_BLOCK + 7, 11), (ROWS_PER_BLOCK + 1, 0)]


def test_the_top_k_control_takes_the_largest_weights_that_are_not_candidates():
    weight = torch.zeros(8, 8)
    for rank in range(TOP_K_CONTROL_WEIGHTS + 4):  # magnitudes 100, 99, ... in distinct places
        weight[rank // 8, rank % 8] = 100.0 - rank
    candidates = {(0, 0), (0, 2)}
    chosen = TopKControl().coordinates(weight, candidates, layer=1)
    expected = [
        (r // 8, r % 8)
        for r in range(TOP_K_CONTROL_WEIGHTS + 2)
        if (r // 8, r % 8) not in candidates
    ]
    assert chosen == expected and len(chosen) == TOP_K_CONTROL_WEIGHTS


def test_the_top_k_control_keeps_its_count_and_stored_indices():
    def stored(row, col):  # stored transposed, as a Conv1D keeps it
        return (col, row)

    assert TopKControl().details([(1, 2), (3, 4)], 0, stored) == {
        "k": 2,
        "indices": [(2, 1), (4, 3)],
    }
