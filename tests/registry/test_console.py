"""Progress for a person: plain lines when stderr is not a terminal."""

import io

from registry import console
from registry.console import StageProgress


def test_plain_lines_start_at_the_first_unit_of_work_and_end_with_the_seconds(monkeypatch):
    now = iter([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 11.0]).__next__
    monkeypatch.setattr(console.time, "monotonic", now)
    out = io.StringIO()
    with StageProgress(out) as display:
        for report in [("load", 0, 4), ("load", 1, 4), ("load", 2, 4), ("load", 4, 4),
                       ("detect", 0, 30), ("detect", 1, 30), ("detect", 29, 30), ("detect", 30, 30)]:
            display(*report)
    assert out.getvalue().splitlines() == [
        "load     1/4",
        "load     4/4 (2.0 s)",  # 2/4 came within the interval: not repeated
        "detect   1/30",
        "detect   29/30",  # 6 s after the last line
        "detect   30/30 (8.0 s)",
    ]


def test_nothing_is_printed_for_a_stage_that_did_no_work():
    out = io.StringIO()
    StageProgress(out)("load", 0, 4)
    assert out.getvalue() == ""
