"""A model's lineage as its lookup answers it: the base models its revisions name, and the
fine-tunes the registry holds (models whose revisions name it as their base), each with how many
of the base's verified super weights its latest such revision keeps.

Pure functions of revision documents (no database), so that the registry's lookup
(`registry.superweights.service.lookup_document`) and an offline index (`swreg.Index.lookup`)
answer the same lineage.
"""

from collections.abc import Iterable
from typing import Any

# Fine-tunes one answer lists at most, by model id; `fine_tunes_total` counts them all (a
# popular base has thousands of fine-tunes on the Hub).
MAX_FINE_TUNES = 100


def check_summary(lineage_check: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(kept, checked): how many of the base's verified coordinates a lineage check found kept,
    out of how many it checked; (None, None) without a check."""
    if not lineage_check:
        return None, None
    coordinates = lineage_check.get("coordinates") or []
    kept = sum(1 for c in coordinates if c.get("outcome") == "kept")
    return kept, len(coordinates)


def _latest(revisions: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model id, its revision updated last (the greatest revision among equal times)."""
    latest: dict[str, dict[str, Any]] = {}
    for rev in revisions:
        key = (rev.get("updated_at") or "", rev["revision"])
        known = latest.get(rev["model_id"])
        if known is None or key > (known.get("updated_at") or "", known["revision"]):
            latest[rev["model_id"]] = rev
    return latest


def lineage_document(
    revisions: Iterable[dict[str, Any]], fine_tune_revisions: Iterable[dict[str, Any]], total: int
) -> dict[str, Any]:
    """The lineage of a model from its own revisions (documents, or anything with their
    `base_model`) and the revisions that name it as their base (`model_id`, `revision`,
    `updated_at` as RFC 3339 text, `lineage_check`) of its first MAX_FINE_TUNES fine-tunes by
    id; `total`: how many fine-tunes there are in all."""
    latest = _latest(fine_tune_revisions)
    fine_tunes = []
    for model_id in sorted(latest)[:MAX_FINE_TUNES]:
        rev = latest[model_id]
        kept, checked = check_summary(rev.get("lineage_check"))
        fine_tunes.append(
            {"model_id": model_id, "revision": rev["revision"], "kept": kept, "checked": checked}
        )
    return {
        "base_models": sorted({r["base_model"] for r in revisions if r.get("base_model")}),
        "fine_tunes": fine_tunes,
        "fine_tunes_total": total,
    }
