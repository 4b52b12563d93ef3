"""The verdict rule: a super weight at least doubles perplexity when zeroed (the paper reports
orders of magnitude; SmolLM2's figures: docs/measurements.md), unless a control shows the
tensor or the evaluation too fragile to attribute the effect to one weight.

Every ratio comes with its confidence interval (`statistics`): a candidate is `verified` only when
the whole interval lies at or above the threshold, `rejected` when it lies below (or a control
vetoes), and otherwise stays a `candidate`, with the reason, rather than being forced either way.
"""

from typing import Literal

from workers.science.validation.controls import CONTROLS
from workers.science.validation.statistics import Interval

MIN_PERPLEXITY_RATIO = 2.0
# A variant is "decided" for the ablation rule once its interval excludes this ratio.
State = Literal["verified", "rejected", "candidate"]  # the contract's DetectedState
VERIFIED: State = "verified"
REJECTED: State = "rejected"
CANDIDATE: State = "candidate"


def verdict(
    ablated: Interval, controls: dict[str, Interval], subject: str = "zeroing it"
) -> tuple[State, str]:
    """The state and its reason, from the ablation's and the controls' intervals. `subject` says
    what was zeroed (a weight alone, or with the shadow rows of its input channel)."""
    for control in CONTROLS:
        if control.name in controls and (reason := control.veto(controls[control.name])):
            return REJECTED, reason
    if ablated.below(MIN_PERPLEXITY_RATIO):
        return REJECTED, (
            f"{subject} multiplies perplexity by only {ablated.describe()} (< "
            f"{MIN_PERPLEXITY_RATIO})"
        )
    if ablated.above(MIN_PERPLEXITY_RATIO):
        doubts = [
            reason
            for control in CONTROLS
            if control.name in controls and (reason := control.doubt(controls[control.name]))
        ]
        reason = (
            f"{subject} multiplies perplexity by {ablated.describe()} (>= {MIN_PERPLEXITY_RATIO})"
        )
        if doubts:
            return CANDIDATE, f"{reason}, but the {doubts[0]}"
        clauses = [
            clause
            for control in CONTROLS
            if control.name in controls and (clause := control.describe(controls[control.name]))
        ]
        return VERIFIED, reason + "".join(f" while {c}" for c in clauses)
    return CANDIDATE, (
        f"{subject} multiplies perplexity by {ablated.describe()}: the interval straddles "
        f"x{MIN_PERPLEXITY_RATIO}, so it is neither verified nor rejected"
    )


def expert_verdict(pruned: Interval, controls: dict[int, Interval]) -> tuple[State, str]:
    """A super expert's state and reason: pruning it (still routed to, its output zero) must at
    least double perplexity, as for a weight, while pruning a random other expert of the layer
    the same way does not (`controls`: expert -> its interval). A random expert that also doubles
    it shows a layer too fragile to single one expert out."""
    for expert, interval in sorted(controls.items()):
        if interval.above(MIN_PERPLEXITY_RATIO):
            return REJECTED, (
                f"pruning random expert {expert} of the layer also multiplies perplexity by "
                f"{interval.describe()} (>= {MIN_PERPLEXITY_RATIO}): the layer is too fragile to "
                "single one expert out"
            )
    if pruned.below(MIN_PERPLEXITY_RATIO):
        return REJECTED, (
            f"pruning it multiplies perplexity by only {pruned.describe()} (< "
            f"{MIN_PERPLEXITY_RATIO})"
        )
    if pruned.above(MIN_PERPLEXITY_RATIO):
        reason = (
            f"pruning it multiplies perplexity by {pruned.describe()} (>= {MIN_PERPLEXITY_RATIO})"
        )
        unsure = [e for e, i in sorted(controls.items()) if not i.below(MIN_PERPLEXITY_RATIO)]
        if unsure:
            return CANDIDATE, (
                f"{reason}, but pruning random expert {unsure[0]} moved it "
                f"{controls[unsure[0]].describe()}, "
                f"which neither shows nor rules out x{MIN_PERPLEXITY_RATIO}"
            )
        if not controls:
            return (
                VERIFIED,
                f"{reason}; the layer has no other expert the router used to compare with",
            )
        clauses = ", ".join(f"expert {e} x{i.ratio:.3f}" for e, i in sorted(controls.items()))
        return VERIFIED, f"{reason} while pruning random experts of the layer moves it {clauses}"
    return CANDIDATE, (
        f"pruning it multiplies perplexity by {pruned.describe()}: the interval straddles "
        f"x{MIN_PERPLEXITY_RATIO}, so it is neither verified nor rejected"
    )
