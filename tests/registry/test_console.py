"""Progress for a person: plain lines when stderr is not a terminal."""

import io

from registry import console
from registry.console import StageProgress


def test_plain_lines_start_at_the_first_unit_of_work_and_end_with_the_seconds(monkeypatch):
    now = iter([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 11.0]).__next__
    monkeypatch.setattr(console.time, "monotonic", now)
    out = io.StringIO()
    with StageProgress(out) as display:
        for report in [
            ("load", 0, 4),
            ("load", 1, 4),
            ("load", 2, 4),
            ("load", 4, 4),
            ("detect", 0, 30),
            ("detect", 1, 30),
            ("detect", 29, 30),
            ("detect", 30, 30),
        ]:
            display(*report)
    assert out.getvalue().splitlines() == [
        "load     1/4 (~2 s left)",  # 1 of 4 in 0.5 s: 3 more take 1.5 s
        "load     4/4 (2.0 s)",  # 2/4 came within the interval: not repeated
        "detect   1/30 (~29 s left)",
        "detect   29/30 (~0 s left)",  # 6 s after the last line
        "detect   30/30 (8.0 s)",
    ]


def test_nothing_is_printed_for_a_stage_that_did_no_work():
    out = io.StringIO()
    StageProgress(out)("load", 0, 4)
    assert out.getvalue() == ""


def test_a_stage_run_again_after_another_is_reported_as_its_next_pass(monkeypatch):
    """Validation goes in rounds (validate, score, validate again from a later layer, score):
    the log follows them, each round labelled as the stage's next pass, so its last line is the
    stage that really ran last and no count seems to go backwards."""
    now = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).__next__
    monkeypatch.setattr(console.time, "monotonic", now)
    out = io.StringIO()
    with StageProgress(out) as display:
        for report in [
            ("validate", 1, 30),
            ("validate", 30, 30),
            ("score", 1, 1),
            ("validate", 12, 30),
            ("validate", 30, 30),
            ("score", 1, 1),
            ("score", 1, 1),
        ]:
            display(*report)
    assert out.getvalue().splitlines() == [
        "validate 1/30",  # its first report: no pace measured yet
        "validate 30/30 (1.0 s)",
        "score    1/1 (0.0 s)",
        "validate pass 2 12/30",  # a new pass, within the interval of the last validate line
        "validate pass 2 30/30 (1.0 s)",
        "score pass 2 1/1 (0.0 s)",  # the same count as the first pass's, but a new pass
    ]  # the repeated report with nothing in between is not a new pass
    assert (display.passes("validate"), display.passes("score"), display.passes("load")) == (
        2,
        2,
        0,
    )


def test_a_stage_reported_from_zero_counts_its_seconds_from_its_start(monkeypatch):
    """Scoring reports 0/N when it starts: its time is the work's, not 0.0 s at the end."""
    now = iter([0.0, 13.0]).__next__
    monkeypatch.setattr(console.time, "monotonic", now)
    out = io.StringIO()
    with StageProgress(out) as display:
        display("score", 0, 4)
        display("score", 4, 4)
    assert out.getvalue().splitlines() == ["score    4/4 (13.0 s)"]


def test_each_pass_gets_its_own_bar_on_a_terminal():
    """On a terminal a second pass is a new bar labelled as such, never the first bar sent back."""
    out = io.StringIO()
    with StageProgress(out, bars=True) as display:
        for report in [("validate", 30, 30), ("score", 1, 1), ("validate", 13, 30)]:
            display(*report)
        bars = {key: (bar.desc, bar.n, bar.total) for key, bar in display._bars.items()}
    assert bars == {
        "validate#1": ("validate", 30, 30),
        "score#1": ("score   ", 1, 1),
        "validate#2": ("validate pass 2", 13, 30),
    }


def test_the_whole_run_s_time_left_is_a_line_every_interval_or_one_bar(monkeypatch):
    from registry.time_left import Estimate

    now = iter([0.0, 1.0, 7.0, 8.0]).__next__
    monkeypatch.setattr(console.time, "monotonic", now)
    out = io.StringIO()
    display = StageProgress(out, prefix="job 3: ")
    for left in (40.0, 38.0, 31.0):  # the second comes within the interval: not repeated
        display.overall(Estimate(left, "job", "the last 2 jobs", elapsed=60 - left))
    display.overall(None)  # nothing measured: nothing said
    display.overall(
        Estimate(9.0, "stage", "the pace of detect so far", stage="detect")
    )  # within the interval
    assert out.getvalue().splitlines() == [
        "job 3: all      ~40 s left",
        "job 3: all      ~31 s left",
    ]

    monkeypatch.undo()

    terminal = io.StringIO()
    with StageProgress(terminal, bars=True) as bars:
        bars("detect", 3, 30)
        bars.overall(
            Estimate(30.0, "stage", "the pace of detect so far", elapsed=10.0, stage="detect")
        )
        bars.overall(
            Estimate(10.0, "stage", "the pace of detect so far", elapsed=30.0, stage="detect")
        )
    drawn = terminal.getvalue()
    assert "all" in drawn and "75%" in drawn
    assert "? (no earlier run to measure on; detect ~10 s left at its pace)" in drawn
