"""The verdict rule: a super weight at least doubles perplexity when zeroed (the paper reports
orders of magnitude; SmolLM2: 20.19 -> 378.6, docs/measurements.md), unless a control shows the
tensor or the evaluation too fragile to attribute the effect to one weight."""

from workers.science.validation.controls import CONTROLS

MIN_PERPLEXITY_RATIO = 2.0


def verdict(
    baseline_ppl: float, ablated_ppl: float, control_ppl: dict[str, float]
) -> tuple[str, str]:
    """`verified` or `rejected`, with the reason, from the ablated and the controls' perplexity."""
    ratio = ablated_ppl / baseline_ppl
    ratios = {name: ppl / baseline_ppl for name, ppl in control_ppl.items()}
    for control in CONTROLS:
        if control.name in ratios and (reason := control.veto(ratios[control.name])):
            return "rejected", reason
    if ratio >= MIN_PERPLEXITY_RATIO:
        clauses = [
            clause
            for control in CONTROLS
            if control.name in ratios and (clause := control.describe(ratios[control.name]))
        ]
        reason = f"zeroing it multiplies perplexity by {ratio:.2f} (>= {MIN_PERPLEXITY_RATIO})"
        return "verified", reason + "".join(f" while {c}" for c in clauses)
    return "rejected", f"zeroing it multiplies perplexity by only {ratio:.3f} (< {MIN_PERPLEXITY_RATIO})"
