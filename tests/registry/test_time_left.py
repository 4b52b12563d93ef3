"""One formula for the time a run has left (a worker's job, a local `swreg detect`): the current
stage at its own pace, the later stages as recent runs took them (less what of them is already
done beside it), and never less than what the usual run still takes."""

from registry.time_left import Measured, time_left

STAGES = ("load", "detect", "validate", "score")
RECENT = Measured(
    {"load": 2.0, "detect": 10.0, "validate": 30.0, "score": 12.0, "total": 60.0},
    4,
    "last {n} runs",
)


def test_a_later_stage_running_beside_the_current_one_counts_only_its_share_left():
    """The streamed sweep validates each layer as it detects it: at detect 15/30 (15 s in),
    validate 15/30 has half of its usual 30 s left, score all of its 12 s."""
    counts = {"load": (4, 4), "detect": (15, 30), "validate": (15, 30)}
    found = time_left(STAGES, "detect", counts, 15.0, 20.0, RECENT)
    # 15 more layers at 1 s, half of validate's 30 s, score's 12 s: 42 > 60 - 20 = 40.
    assert (found.seconds, found.scope, found.elapsed) == (42.0, "job", 20.0)
    assert (
        found.basis == "the pace of detect so far, and the later stages' median on the last 4 runs"
    )
    # Without validate's count the whole of it is left: 15 + 30 + 12.
    assert time_left(STAGES, "detect", {"detect": (15, 30)}, 15.0, 20.0, RECENT).seconds == 57.0


def test_the_usual_length_wins_when_the_pace_says_less():
    found = time_left(STAGES, "score", {"score": (2, 2)}, 10.0, 50.0, RECENT)
    assert found.seconds == 10.0  # the pace says 0; usual 60 - 50


def test_before_any_unit_a_stage_is_what_it_usually_takes_and_without_history_nothing():
    assert time_left(STAGES, "load", {"load": (0, 4)}, 0.5, 0.5, RECENT).seconds == 59.5
    assert time_left(STAGES, "load", {"load": (0, 4)}, 0.5, 0.5, None) is None
    none_yet = Measured({}, 0, "last {n} runs")
    found = time_left(STAGES, "detect", {"detect": (3, 30)}, 3.0, 5.0, none_yet)
    assert (found.seconds, found.scope, found.basis) == (27.0, "stage", "the pace of detect so far")


def test_recent_runs_scale_by_this_run_s_speed_on_its_finished_stages():
    """Its detect took 20 s where recent runs took 10: the later stages and the usual length
    double (up to a bound); loading (imports, disk caches) and a stage of under
    MIN_MEASURED_SECONDS say nothing of speed."""
    counts = {"detect": (30, 30), "validate": (15, 30)}
    found = time_left(STAGES, "validate", counts, 10.0, 30.0, RECENT, finished={"detect": 20.0})
    # 15 more layers at 10 s for 15; score at twice its 12 s: 10 + 24 = 34;
    # usual: 2 * 60 - 30 = 90 wins.
    assert found.seconds == 90.0
    slow = time_left(STAGES, "validate", counts, 10.0, 30.0, RECENT, finished={"detect": 90.0})
    assert slow.seconds == 3 * 60 - 30  # bounded at 3 times slower
    loaded = time_left(STAGES, "validate", counts, 10.0, 30.0, RECENT, finished={"load": 9.0})
    assert loaded.seconds == 60 - 30  # load's 9 s against 2: not a speed
    short = Measured({"detect": 0.5, "validate": 10.0, "total": 20.0}, 1, "last {n} runs")
    one = time_left(STAGES, "validate", counts, 5.0, 6.0, short, finished={"detect": 5.0})
    assert one.seconds == 20.0 - 6.0  # 0.5 s of detect: speed unmeasured
