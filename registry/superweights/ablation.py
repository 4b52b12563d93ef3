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
    with how many times zeroing each kept weight multiplies the fine-tune's perplexity."""
    coordinates = check.get("coordinates") or []
    kept = [c for c in coordinates if c.get("outcome") == "kept"]
    count = len(coordinates)
    plural = "" if count == 1 else "s"
    text = f"keeps {len(kept)} of {count} verified super weight{plural} of its base"
    ratios = [f"×{_times(ratio)}" for c in kept if (ratio := _number(c.get("ratio"))) is not None]
    return text + (f" ({', '.join(ratios)})" if ratios else "")
