"""How long a run of the analysis has left, from measured rates: one formula for a worker's job
(the API's `eta`, the job page, `swreg submit --wait`) and a local `swreg detect`.

Two measurements, the larger wins:

- **this run's pace**: the stage it is in has done `done` of `total` units in the seconds it has
  run, so the rest of the stage takes (total - done) at that pace; each later stage takes what
  it took on recent runs (its median), less the share of it already done where a later stage
  runs beside this one (the streamed sweep validates each layer as it detects it);
- **the recent runs' length**: their median total time less the time this run has taken. A run
  whose stage is done may still be in a later validation pass (a stage is shown again only as a
  new pass), which the pace alone would call finished.

Where the caller knows which earlier stages are finished and measures them as the recent runs
were measured (a local run: each stage's first pass), both scale what recent runs took by this
run's speed against them: the seconds its finished stages took over what those stages took on
recent runs (a machine twice as busy), bounded by SPEED_BOUNDS, and only once the finished stages
add up to MIN_MEASURED_SECONDS of recent time (a tenth of a second says nothing of speed).

Without a recent run to measure later stages on, the estimate covers the current stage only, and
says so (`scope`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The key of a run's whole time among its stages' times.
TOTAL = "total"
# How much slower or faster than recent runs this run may be taken to go: beyond these, one slow
# stage (a cold disk cache) would be extrapolated to the whole run.
SPEED_BOUNDS = (1 / 3, 3.0)
# The recent seconds of this run's finished stages needed before their speed is believed.
MIN_MEASURED_SECONDS = 2.0
# Stages whose time is not the machine's speed at the analysis: the network (fetch), imports and
# a cold or warm disk cache (load; quantize-check's `find load`).
NOT_SPEED = frozenset({"fetch", "load"})


@dataclass(frozen=True)
class Estimate:
    seconds: float
    scope: str  # "job": every stage left; "stage": the current stage only (nothing to measure on)
    basis: str  # in words, for the API, the page and the command line
    elapsed: float = (
        0.0  # the run's seconds so far: its overall progress is elapsed / (elapsed + seconds)
    )
    stage: str = ""  # the stage the run is in (what a "stage" estimate covers)


@dataclass(frozen=True)
class Measured:
    """What recent runs took: each stage's median seconds (and TOTAL's), and over what."""

    seconds: Mapping[str, float]
    runs: int
    # The runs in words, with `{n}` for their number ("last {n} successful jobs").
    described_as: str


def time_left(
    stages: Sequence[str],
    stage: str,
    counts: Mapping[str, tuple[int, int]],
    elapsed_in_stage: float,
    ran: float,
    measured: Measured | None,
    finished: Mapping[str, float] | None = None,
) -> Estimate | None:
    """The seconds a run has left. `stages`: the run's stages in order; `stage`: the one it is in;
    `counts`: (done, total) of every stage reported so far (at least `stage`'s); `ran`: the run's
    seconds so far; `finished`: the seconds of this run's stages before `stage` (its speed).
    None when nothing is measured yet (no unit of the stage done and no recent run to go by)."""
    done, total = counts[stage]
    recent = measured.seconds if measured is not None and measured.runs else {}
    if done > 0 and elapsed_in_stage > 0:
        stage_left = max(total - done, 0) * elapsed_in_stage / done
    elif stage in recent:
        stage_left = max(recent[stage] - elapsed_in_stage, 0.0)
    else:
        return None
    if not recent or measured is None:
        return Estimate(
            round(stage_left, 1), "stage", f"the pace of {stage} so far", round(ran, 1), stage
        )
    position = stages.index(stage) if stage in stages else len(stages)
    speed = _speed(recent, {s: t for s, t in (finished or {}).items() if s in stages[:position]})
    later = stages[position + 1 :]
    paced = stage_left + speed * sum(recent.get(s, 0.0) * _share_left(counts.get(s)) for s in later)
    usual = speed * recent.get(TOTAL, 0.0) - ran
    runs = measured.described_as.format(n=measured.runs)
    basis = f"the pace of {stage} so far, and the later stages' median on the {runs}"
    return Estimate(round(max(paced, usual, 0.0), 1), "job", basis, round(ran, 1), stage)


def _speed(recent: Mapping[str, float], finished: Mapping[str, float]) -> float:
    """How many times longer this run's finished stages took than on recent runs (1: no measure)."""
    measures = [s for s in finished if s in recent and s.split()[-1] not in NOT_SPEED]
    then = sum(recent[s] for s in measures)
    now = sum(finished[s] for s in measures)
    if then < MIN_MEASURED_SECONDS or now <= 0:
        return 1.0
    low, high = SPEED_BOUNDS
    return min(max(now / then, low), high)


def _share_left(count: tuple[int, int] | None) -> float:
    """The share of a stage still to do: all of it until it is reported."""
    if count is None or count[1] <= 0:
        return 1.0
    done, total = count
    return max(total - done, 0) / total
