"""Which candidates of a layer are ablated: shadows of one input channel together, strongest
first, at most MAX_ABLATIONS_PER_LAYER units, the rest skipped."""

import pytest

from tests.helpers import candidate
from workers.science.validation.selection import (
    MAX_ABLATIONS_PER_LAYER,
    layer_peaks,
    select,
    spike_share,
)


def test_rows_fed_by_one_input_channel_are_one_unit():
    # One huge input channel (col 9) feeds three rows: shadows of one spike.
    shadows = [candidate(r, 9, 900.0 - r, 1000.0 - r) for r in (1, 2, 3)]
    other = candidate(1, 4, 90.0, 999.0)
    selection = select([*shadows, other])
    assert [u.col for u in selection.ablated] == [9, 4]
    group = selection.ablated[0]
    assert group.is_group and group.coordinates == [(1, 9), (2, 9), (3, 9)]
    assert not selection.ablated[1].is_group


def test_units_are_ranked_by_the_share_of_the_spike_they_carry():
    # Two rows spike; a column of the weaker row carries less of the layer's spike than its
    # share of its own row says.
    strong = candidate(5, 1, 600.0, 1000.0)  # 0.6 of the layer's peak
    weak_row = candidate(6, 2, 90.0, 100.0)  # 0.9 of its row, 0.09 of the layer's peak
    second = candidate(5, 3, 400.0, 1000.0)  # 0.4
    selection = select([weak_row, second, strong])
    assert [u.col for u in selection.ablated] == [1, 3, 2]
    assert [u.rank for u in selection.ablated] == [1, 2, 3]
    assert selection.shares[(3, 6, 2)] == pytest.approx(0.09)


def test_units_beyond_the_bound_are_skipped_and_counted():
    candidates = [
        candidate(5, col, 1000.0 - col * 10, 1000.0) for col in range(MAX_ABLATIONS_PER_LAYER + 2)
    ]
    selection = select(candidates)
    assert len(selection.ablated) == MAX_ABLATIONS_PER_LAYER
    assert [u.col for u in selection.skipped] == [
        MAX_ABLATIONS_PER_LAYER,
        MAX_ABLATIONS_PER_LAYER + 1,
    ]
    assert selection.ranked == MAX_ABLATIONS_PER_LAYER + 2
    assert [u.rank for u in selection.skipped] == [
        MAX_ABLATIONS_PER_LAYER + 1,
        MAX_ABLATIONS_PER_LAYER + 2,
    ]


def test_no_candidates_no_units():
    selection = select([])
    assert selection.ablated == [] and selection.skipped == []


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------


def test_the_peak_of_a_prompt_is_its_largest_spike_whatever_its_size():
    small = [candidate(1, 1, 0.2, 0.5), candidate(2, 1, 0.1, -0.25)]
    assert layer_peaks(small) == {0: 0.5}
    later_smaller = [
        candidate(1, 1, 900.0, 1000.0),
        candidate(2, 2, 400.0, 500.0),
        candidate(3, 2, 1.0, 2.0, prompt=1),
    ]
    assert layer_peaks(later_smaller) == {0: 1000.0, 1: 2.0}


def test_the_share_of_a_small_spike_counts_and_a_silent_prompt_carries_none():
    assert spike_share(candidate(1, 1, 0.25, 0.5), {0: 0.5}) == 0.5
    silent = candidate(1, 1, 1.0, 1.0)
    silent.observations[0].output = silent.observations[0].share = 0.0
    assert spike_share(silent, {0: 0.0}) == 0.0
    unseen = candidate(1, 1, 1.0, 2.0)
    unseen.observations.clear()
    assert spike_share(unseen, {}) == 0.0


def test_units_carry_their_layer_and_no_candidates_no_shares():
    selection = select([candidate(1, 1, 9.0, 10.0, layer=7)])
    assert [(u.layer, u.col, u.rank) for u in selection.ablated] == [(7, 1, 1)]
    assert select([]).shares == {}
