"""The sources of a published or reported coordinate, and the places other sources give instead.

A coordinate that sources state (state `published` or `reported`) keeps every source that states
it: the citation, where in it (a table, a file and line), what it says, and a link. When sources
place the same weight differently (another layer, another index), each placement is its own
coordinate with its own sources, and each lists the others in `disputed_with`.

Everything here is canonical (fixed keys, sorted, no duplicates), so that importing the same
sources twice, or in another order, stores the same thing, and export stays byte-stable.
"""

from typing import Any

from registry.superweights.models import index_key

SOURCE_FIELDS = ("citation", "locator", "statement", "url")


def canonical_source(source: dict[str, Any]) -> dict[str, Any]:
    return {field: source.get(field) for field in SOURCE_FIELDS}


def _source_key(source: dict[str, Any]) -> tuple[str, ...]:
    return tuple(source[field] or "" for field in SOURCE_FIELDS)


def canonical_sources(*lists: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The sources of every list, each once, in a fixed order."""
    merged = {}
    for sources in lists:
        for source in sources or []:
            source = canonical_source(source)
            merged[_source_key(source)] = source
    return [merged[key] for key in sorted(merged)]


def canonical_places(*lists: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The places ({tensor, index}) of every list, each once, sorted by tensor and index."""
    merged = {}
    for places in lists:
        for place in places or []:
            index = [int(i) for i in place["index"]]
            merged[(place["tensor"], index_key(index))] = {
                "tensor": place["tensor"],
                "index": index,
            }
    return sorted(merged.values(), key=lambda p: (p["tensor"], p["index"]))


def merged_claim_state(current: str, incoming: str) -> str:
    """Two claims (CLAIM_STATES) about one coordinate: `published` when either is the paper
    authors', else `reported`."""
    return "published" if "published" in (current, incoming) else "reported"


def canonical_experts(*lists: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The (layer, expert) places of every list ({layer, expert}), each once, sorted."""
    merged = {(int(p["layer"]), int(p["expert"])) for places in lists for p in places or []}
    return [{"layer": layer, "expert": expert} for layer, expert in sorted(merged)]
