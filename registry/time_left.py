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

Without a recent run to measure later stages on, the estimate covers the current stage only, and
says so (`scope`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The key of a run's whole time among its stages' times.
TOTAL = "total"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    scope: str  # "job": every stage left; "stage": the current stage only (nothing to measure on)
    basis: str  # in words, for the API, the page and the command line
    elapsed: float = (
        0.0  # the run's seconds so far: its overall progress is elapsed / (elapsed + seconds)
    )


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
) -> Estimate | None:
    """The seconds a run has left. `stages`: the run's stages in order; `stage`: the one it is in;
    `counts`: (done, total) of every stage reported so far (at least `stage`'s); `ran`: the run's
    seconds so far. None when nothing is measured yet (no unit of the stage done and no recent
    run to go by)."""
    done, total = counts[stage]
    recent = measured.seconds if measured is not None and measured.runs else {}
    if done > 0 and elapsed_in_stage > 0:
        stage_left = max(total - done, 0) * elapsed_in_stage / done
    elif stage in recent:
        stage_left = max(recent[stage] - elapsed_in_stage, 0.0)
    else:
        return None
    if not recent or measured is None:
        return Estimate(round(stage_left, 1), "stage", f"the pace of {stage} so far", round(ran, 1))
    later = stages[stages.index(stage) + 1 :] if stage in stages else ()
    paced = stage_left + sum(recent.get(s, 0.0) * _share_left(counts.get(s)) for s in later)
    usual = recent.get(TOTAL, 0.0) - ran
    runs = measured.described_as.format(n=measured.runs)
    basis = f"the pace of {stage} so far, and the later stages' median on the {runs}"
    return Estimate(round(max(paced, usual, 0.0), 1), "job", basis, round(ran, 1))


def _share_left(count: tuple[int, int] | None) -> float:
    """The share of a stage still to do: all of it until it is reported."""
    if count is None or count[1] <= 0:
        return 1.0
    done, total = count
    return max(total - done, 0) / total
