"""What a model page says before the evidence: the one-line answer per revision, the order the
states are listed in, the disputes between sources, and the legend of states.

Everything here reads the same revision documents the API serves
(`registry.superweights.documents.revision_document`), so the page says what `swreg lookup` says.
"""

from typing import Any

from registry.superweights.ablation import keeps_text, lineage_ratio_text
from registry.web.evidence import fmt, number

# The order a reader wants: proven weights first, then claims not yet checked, then the
# detections that failed validation and the withdrawn entries.
STATE_ORDER = ("verified", "candidate", "published", "reported", "rejected", "retracted")

# One sentence per state, for the legend at the top of each model page.
STATE_LEGEND = {
    "verified": "found by swreg at this exact revision and proven by ablation: zeroing it "
    "multiplies perplexity (interval shown), random and large-weight controls do not.",
    "candidate": "found by detection (a super activation this weight explains), not yet validated.",
    "published": "stated by a paper or its code for this model, revision unknown; not yet "
    "checked by swreg.",
    "reported": "a super expert stated by a paper for this model, revision unknown; not yet "
    "checked by swreg.",
    "rejected": "a spike detection found, but zeroing the weight did not move perplexity: "
    "not a super weight. Kept as evidence.",
    "retracted": "withdrawn with a reason (kept, never deleted).",
    "disputed": "sources disagree on where this weight is: each claim is listed with its sources.",
}

UNKNOWN_REVISION = "unknown"


def state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


def ordered_states(states: dict[str, int]) -> list[tuple[str, int]]:
    """A model's coordinate counts by state, verified first."""
    return sorted(states.items(), key=lambda item: (state_rank(item[0]), item[0]))


def layer_key(sw: dict[str, Any]) -> tuple:
    return (sw["layer"], sw.get("expert") if sw.get("expert") is not None else -1, sw["index"])


def ordered(coordinates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Coordinates by state (verified first), then by layer and index (numerically)."""
    return sorted(coordinates, key=lambda sw: (state_rank(sw["state"]), layer_key(sw)))


def place(sw: dict[str, Any]) -> str:
    """A coordinate in a few characters: `L11 [507, 1229]` (`L1 E2 [2, 7, 5]` in an expert)."""
    expert = f" E{sw['expert']}" if sw.get("expert") is not None else ""
    return f"L{sw['layer']}{expert} [{', '.join(str(i) for i in sw['index'])}]"


def ablation_ratio(sw: dict[str, Any]) -> float | None:
    """How many times zeroing the weight multiplied perplexity (its validation's ratio)."""
    validation = (sw.get("evidence") or {}).get("validation") or {}
    return number((validation.get("ablated") or {}).get("ratio"))


def ratio_interval(sw: dict[str, Any]) -> tuple[float, float] | None:
    validation = (sw.get("evidence") or {}).get("validation") or {}
    interval = (validation.get("ablated") or {}).get("interval") or {}
    low, high = number(interval.get("low")), number(interval.get("high"))
    return None if low is None or high is None else (low, high)


def _claim(sw: dict[str, Any]) -> str:
    text = place(sw)
    ratio = ablation_ratio(sw)
    if sw["state"] == "verified" and ratio is not None:
        text += f", ×{fmt(ratio, 1)}"
    if (sw.get("provenance") or {}).get("disputed_with"):
        text += " (disputed)"
    return text


def answer(rev: dict[str, Any]) -> str:
    """The revision in one line, verified first: `1 verified: L11 [507, 1229], ×18.8 · 1
    rejected`. Coordinates worth keeping are named; rejected and retracted are counted."""
    coordinates = ordered(rev.get("super_weights") or [])
    if not coordinates and not rev.get("super_experts"):
        return "no super weight: detection found no super activation"
    parts = []
    for state in STATE_ORDER:
        of_state = [sw for sw in coordinates if sw["state"] == state]
        if not of_state:
            continue
        if state in ("rejected", "retracted"):
            parts.append(f"{len(of_state)} {state}")
        else:
            parts.append(f"{len(of_state)} {state}: " + "; ".join(_claim(sw) for sw in of_state))
    experts = rev.get("super_experts") or []
    if experts:
        named = "; ".join(
            f"L{se['layer']} E{se['expert']} {se['state']}"
            for se in sorted(
                experts, key=lambda se: (state_rank(se["state"]), se["layer"], se["expert"])
            )
        )
        parts.append(f"{len(experts)} super expert{'s' if len(experts) > 1 else ''}: {named}")
    return " · ".join(parts)


def revision_label(rev: dict[str, Any]) -> str:
    if rev["revision"] == UNKNOWN_REVISION:
        return "published (revision unknown)"
    # A content hash keeps its "sha256:" and 12 digits; a commit its first 12 characters.
    shown = rev["revision"][:19] if rev["revision"].startswith("sha256:") else rev["revision"][:12]
    return f"revision {shown}…"


def disputes(rev: dict[str, Any]) -> list[dict[str, Any]]:
    """Each dispute between sources, with every claim in it: the coordinates that name each
    other in `disputed_with`, grouped, each claim with the sources that make it."""
    coordinates = rev.get("super_weights") or []
    by_place = {(sw["tensor"], tuple(sw["index"])): sw for sw in coordinates}
    seen: set[tuple] = set()
    found = []
    for sw in ordered(coordinates):
        key = (sw["tensor"], tuple(sw["index"]))
        others = (sw.get("provenance") or {}).get("disputed_with") or []
        if not others or key in seen:
            continue
        group = [key] + [(p["tensor"], tuple(p["index"])) for p in others]
        seen.update(group)
        claims = []
        for tensor, index in group:
            claimed = by_place.get((tensor, index))
            claims.append(
                {
                    "tensor": tensor,
                    "index": list(index),
                    "coordinate": claimed,
                    "sources": (claimed.get("provenance") or {}).get("sources") or []
                    if claimed
                    else [],
                }
            )
        found.append({"claims": claims})
    return found


def shown_states(revisions: list[dict[str, Any]]) -> set[str]:
    """The states the page shows (and "disputed" when a source disagrees): the legend explains
    those."""
    shown = set()
    for rev in revisions:
        for item in [*(rev.get("super_weights") or []), *(rev.get("super_experts") or [])]:
            shown.add(item["state"])
            if (item.get("provenance") or {}).get("disputed_with"):
                shown.add("disputed")
    return shown


def keeps(check: dict[str, Any]) -> str:
    """A fine-tune's lineage check in words: `keeps 1 of 1 verified super weight of its base
    (×41.20)` (the wording of `swreg lookup`)."""
    return keeps_text(check)


def lineage_ratio(checked: dict[str, Any]) -> str:
    """Zeroing one of the base's weights in the fine-tune: `×RATIO (LOW–HIGH)`, or a dash."""
    return lineage_ratio_text(checked) or "–"
