"""How many times zeroing a weight multiplied perplexity, in words: the ratio its validation
measured and the confidence interval the verdict was decided on (`×6.48 (4.09–10.26)`), and a
fine-tune's lineage check (`keeps 1 of 1 verified super weight of its base (×6.48)`). One
wording for `swreg lookup` and the web pages."""

import math
from typing import Any

# Non-finite numbers are stored as strings in the evidence (JSON has no infinity).
_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    return float(value)


def _times(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:,.2f}"


def ratio_text(sw: dict[str, Any]) -> str | None:
    """`×RATIO (LOW–HIGH)` of a validated coordinate (the interval when it was recorded); None
    for one never ablated (published, candidate)."""
    validation = (sw.get("evidence") or {}).get("validation") or {}
    return _ratio_with_interval(validation.get("ablated") or {})


def _ratio_with_interval(ablated: dict[str, Any]) -> str | None:
    ratio = _number(ablated.get("ratio"))
    if ratio is None:
        return None
    text = f"×{_times(ratio)}"
    interval = ablated.get("interval") or {}
    low, high = _number(interval.get("low")), _number(interval.get("high"))
    if low is not None and high is not None:
        text += f" ({_times(low)}–{_times(high)})"
    return text


def lineage_ratio_text(checked: dict[str, Any]) -> str | None:
    """`×RATIO (LOW–HIGH)` of one coordinate of a lineage check: zeroing it in the fine-tune;
    None where it was not ablated (absent)."""
    return _ratio_with_interval(checked)


def keeps_text(check: dict[str, Any]) -> str:
    """A lineage check in words: `keeps 1 of 1 verified super weight of its base (×41.20)`,
    with how many times zeroing each kept weight multiplies the fine-tune's perplexity; a check
    of a mixture-of-experts base's super experts adds `and 1 of 1 super expert (×12.00)`."""
    weights = check.get("coordinates") or []
    text = f"keeps {_count(weights, 'verified super weight')} of its base{_ratios(weights)}"
    experts = check.get("super_experts")
    if experts is not None:
        text += f" and {_count(experts, 'super expert')}{_ratios(experts)}"
    return text


def _count(checked: list[dict[str, Any]], what: str) -> str:
    kept = sum(1 for c in checked if c.get("outcome") == "kept")
    return f"{kept} of {len(checked)} {what}{'' if len(checked) == 1 else 's'}"


def _ratios(checked: list[dict[str, Any]]) -> str:
    """` (×R1, ×R2)`: what zeroing (or pruning) each kept one does here; empty when none."""
    ratios = [
        f"×{_times(ratio)}"
        for c in checked
        if c.get("outcome") == "kept" and (ratio := _number(c.get("ratio"))) is not None
    ]
    return f" ({', '.join(ratios)})" if ratios else ""
