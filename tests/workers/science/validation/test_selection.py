"""Which candidates of a layer are ablated: shadows of one input channel together, strongest
first, at most MAX_ABLATIONS_PER_LAYER units, the rest skipped."""

import pytest

from tests.helpers import candidate
from workers.science.validation.selection import MAX_ABLATIONS_PER_LAYER, select


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
    candidates = [candidate(5, col, 1000.0 - col * 10, 1000.0) for col in range(MAX_ABLATIONS_PER_LAYER + 2)]
    selection = select(candidates)
    assert len(selection.ablated) == MAX_ABLATIONS_PER_LAYER
    assert [u.col for u in selection.skipped] == [MAX_ABLATIONS_PER_LAYER, MAX_ABLATIONS_PER_LAYER + 1]
    assert selection.ranked == MAX_ABLATIONS_PER_LAYER + 2
    assert [u.rank for u in selection.skipped] == [MAX_ABLATIONS_PER_LAYER + 1, MAX_ABLATIONS_PER_LAYER + 2]


def test_no_candidates_no_units():
    selection = select([])
    assert selection.ablated == [] and selection.skipped == []
