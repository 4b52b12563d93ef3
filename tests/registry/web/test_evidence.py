"""What the model page says of a coordinate's validation, from the stored evidence."""

import copy

from registry.web.evidence import validation_rows
from tests.helpers import coordinate


def _evidence(**changes) -> dict:
    evidence = copy.deepcopy(
        coordinate(11, 507, 1229, 5.876, "verified", ablated=138.7)["evidence"]
    )
    evidence["validation"].update(changes)
    return evidence


def test_the_zeroed_row_shows_the_interval_the_verdict_was_decided_on():
    evidence = _evidence()
    evidence["validation"]["ablated"]["interval"] = {
        "low": 4.09,
        "high": 10.26,
        "confidence": 0.99,
        "blocks": 16,
    }
    rows = {row["name"]: row for row in validation_rows(evidence)}
    assert "4.09" in rows["zeroed"]["ratio"] and "10.26" in rows["zeroed"]["ratio"]
    assert "restored" in rows


def test_a_weight_whose_zeroing_moved_nothing_has_no_restored_row():
    """The restore variant runs only where the ablation moved the model (it is null otherwise)."""
    rows = [row["name"] for row in validation_rows(_evidence(restored=None))]
    assert rows == ["baseline", "zeroed", "control: random", "control: top_k"]


def test_each_row_says_how_many_predictions_its_figures_are_over():
    """A sequential run stops early: its perplexity is over fewer predictions than the budget."""
    evidence = _evidence()
    evidence["validation"]["ablated"]["tokens"] = 255
    evidence["validation"]["controls"]["random"]["tokens"] = 1020
    rows = {row["name"]: row for row in validation_rows(evidence)}
    assert rows["zeroed"]["tokens"] == "255"
    assert rows["control: random"]["tokens"] == "1,020"
