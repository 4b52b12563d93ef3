"""How many times zeroing a weight multiplied perplexity, in words: the ratio its validation
measured and the confidence interval the verdict was decided on (`×6.48 (4.09–10.26)`). One
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
    ablated = validation.get("ablated") or {}
    ratio = _number(ablated.get("ratio"))
    if ratio is None:
        return None
    text = f"×{_times(ratio)}"
    interval = ablated.get("interval") or {}
    low, high = _number(interval.get("low")), _number(interval.get("high"))
    if low is not None and high is not None:
        text += f" ({_times(low)}–{_times(high)})"
    return text
