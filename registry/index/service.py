"""Export the registry as one JSON document and import such a document.

The document format is fixed by data/index.schema.json (JSON Schema, draft 2020-12), which
describes every schema version swreg reads: export writes version 2 (coordinates of any rank with
their routed `expert`, and each revision's `super_experts`); documents of version 1 (no experts)
still validate and import. Export is
deterministic (sorted models, coordinates and keys; fixed indent; a trailing newline) so that
export → import into an empty database → export gives the same bytes. Import validates the whole
document before it writes anything, and writes it in the caller's single transaction.
"""

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import jsonschema_rs
from jsonschema.exceptions import best_match
from sqlalchemy.orm import Session

from registry.citation import is_swreg_citation
from registry.errors import InvalidInput

# The document without the database, re-exported: callers read, validate and write documents
# through this module as before.
from registry.index.document import (  # noqa: F401
    EMPTY_REGISTRY_TIME,
    GENERATOR_NAME,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    _check_times,
    _one_line,
    _pointer,
    _validator,
    _version_1_extras,
    check_model_places,
    check_new_revision,
    dumps,
    load_file,
    schema,
    validate_document,
)
from registry.index.stream import meta_document
from registry.superweights import service as sw_service
from registry.superweights.documents import (
    parse_number,
    parse_time,
    revision_document,
    revision_sort_key,
)
from registry.superweights.models import CLAIM_STATES
from registry.superweights.sources import (
    canonical_experts,
    canonical_places,
    canonical_sources,
    merged_claim_state,
)
from workers.sources.pinning import check_model_id

# --- export -----------------------------------------------------------------------------------


def export_document(session: Session, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """The whole registry. `generated_at` (unless pinned) is the time of the last change to
    what the document contains, so the same data always gives the same bytes."""
    revisions = sorted(sw_service.all_revisions(session), key=revision_sort_key)
    if generated_at is None:
        generated_at = sw_service.last_change(session) or EMPTY_REGISTRY_TIME
    return {
        "meta": meta_document(generated_at),
        "models": [revision_document(rev) for rev in revisions],
    }


# --- validation of parts (the streaming import) ----------------------------------------


@lru_cache
def _fast_validator():
    # The same schema compiled by jsonschema-rs: ~100 times faster on a valid model; an invalid
    # one is then described by `jsonschema` (best_match), so messages stay the same.
    return jsonschema_rs.validator_for(schema(), validate_formats=True)


def validate_part(meta: Any, models: list[Any], first: int, source: str) -> None:
    """Validate `meta` with `models` (items `first`... of a document's models) as a document of
    their own would be; errors name the items' places in the whole document."""
    part = {"meta": meta, "models": models}
    if not _fast_validator().is_valid(part):
        _raise_shifted(part, first, source)
    for path in _version_1_extras(part):
        path = ("models", path[1] + first, *path[2:])
        raise InvalidInput(
            f"invalid {source}: at {_pointer(path)}: schema version 1 has no {path[-1]} "
            "(documents with experts are schema version 2)"
        )
    _check_times(part, source, first)
    for k, model in enumerate(models):
        check_model_places(model, first + k, source)


def validate_part_shape(document: Any, source: str) -> None:
    """The schema on a document whose `models` were left out (or are not a list)."""
    error = best_match(_validator().iter_errors(document))
    if error is not None:
        raise InvalidInput(
            f"invalid {source}: at {_pointer(error.absolute_path)}: {_one_line(error.message)}"
        )


def _raise_shifted(part: dict[str, Any], first: int, source: str) -> None:
    for extra in _version_1_extras(part):
        shifted = ("models", extra[1] + first, *extra[2:])
        raise InvalidInput(
            f"invalid {source}: at {_pointer(shifted)}: schema version 1 has no {shifted[-1]} "
            "(documents with experts are schema version 2)"
        )
    error = best_match(_validator().iter_errors(part))
    if error is None:  # the two validators disagree: trust the slower one, which passed
        return
    where: list[Any] = list(error.absolute_path)
    if len(where) >= 2 and where[0] == "models":
        where[1] += first
    raise InvalidInput(f"invalid {source}: at {_pointer(where)}: {_one_line(error.message)}")


# --- import -----------------------------------------------------------------------------------


def _outcomes() -> dict[str, int]:
    return {"created": 0, "updated": 0, "unchanged": 0}


@dataclass
class ImportStats:
    revisions: int = 0
    coordinates: dict[str, int] = field(default_factory=_outcomes)
    super_experts: dict[str, int] = field(default_factory=_outcomes)

    def summary(self) -> str:
        c = self.coordinates
        text = (
            f"{self.revisions} model revisions, {sum(c.values())} coordinates "
            f"({c['created']} new, {c['updated']} updated, {c['unchanged']} unchanged)"
        )
        e = self.super_experts
        if sum(e.values()):  # said only where there are some: dense registries read as before
            text += (
                f", {sum(e.values())} super experts "
                f"({e['created']} new, {e['updated']} updated, {e['unchanged']} unchanged)"
            )
        return text


def parse_optional_time(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


_time = parse_optional_time


def import_document(session: Session, document: dict[str, Any]) -> ImportStats:
    """Upsert every revision and coordinate of a document (validated here too). Idempotent:
    importing the same document twice leaves the database as importing it once.

    A coordinate that the registry already holds as a claim (`published` or `reported`) and that
    the document also states as a claim is merged, not replaced: it keeps the sources and
    disputes of both. Anything else is replaced by what the document says."""
    validate_document(document)
    stats = ImportStats()
    for model in document["models"]:
        import_model(session, model, stats)
    session.flush()
    return stats


def revision_fields(model: dict[str, Any]) -> dict[str, Any]:
    """What a document's model sets on its revision row."""
    return {
        "architecture": model.get("architecture"),
        "dtype": model.get("dtype"),
        "num_layers": model.get("num_layers"),
        "weight_files": model.get("weight_files", []),
        "profile": model.get("profile"),
        # Only when the document says: an index written before the check existed leaves a
        # recorded check alone.
        **(
            {"quantization_check": model["quantization_check"]}
            if "quantization_check" in model
            else {}
        ),
        # Likewise the lineage (optional fields: a revision without a base has neither).
        **({"base_model": check_model_id(model["base_model"])} if "base_model" in model else {}),
        **({"lineage_check": model["lineage_check"]} if "lineage_check" in model else {}),
    }


def coordinate_fields(coord: dict[str, Any]) -> dict[str, Any]:
    """What a document's coordinate sets on its row."""
    prov = coord.get("provenance", {})
    return {
        "tensor": coord["tensor"],
        "index": coord["index"],
        "layer": coord["layer"],
        "module": coord["module"],
        "row": coord["row"],
        "col": coord["col"],
        "value": coord["value"],
        "dtype": coord["dtype"],
        "state": coord["state"],
        "evidence": coord.get("evidence", {}),
        "citation": _stored_citation(prov),
        "sources": canonical_sources(prov.get("sources")),
        "disputed_with": canonical_places(prov.get("disputed_with")),
        "detector_version": prov.get("detector_version"),
        "reproduced_in": sorted(prov.get("reproduced_in", [])),
        "retraction_reason": prov.get("retraction_reason"),
        "retracted_at": _time(prov.get("retracted_at")),
        # Only when the document says (version 2): a version-1 document knows no experts.
        **({"expert": coord["expert"]} if "expert" in coord else {}),
    }


def super_expert_fields(found: dict[str, Any]) -> dict[str, Any]:
    """What a document's super expert sets on its row."""
    prov = found.get("provenance", {})
    return {
        "layer": found["layer"],
        "expert": found["expert"],
        "module": found["module"],
        "state": found["state"],
        "max_abs_output": parse_number(found.get("max_abs_output")),
        "spike_ratio": parse_number(found.get("spike_ratio")),
        "row": found.get("row"),
        "tokens_routed": found.get("tokens_routed"),
        "evidence": found.get("evidence", {}),
        "citation": _stored_citation(prov),
        "sources": canonical_sources(prov.get("sources")),
        "disputed_with": canonical_experts(prov.get("disputed_with")),
        "detector_version": prov.get("detector_version"),
        "reproduced_in": sorted(prov.get("reproduced_in", [])),
        "retraction_reason": prov.get("retraction_reason"),
        "retracted_at": _time(prov.get("retracted_at")),
    }


def provenance_times(item: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    prov = item.get("provenance", {})
    return _time(prov.get("created_at")), _time(prov.get("updated_at"))


def import_model(session: Session, model: dict[str, Any], stats: ImportStats) -> None:
    """Upsert one validated model revision of a document with its coordinates and experts."""
    rev, _ = sw_service.upsert_revision(
        session,
        model_id=model["model_id"],
        revision=model["revision"],
        fields=revision_fields(model),
        created_at=_time(model.get("created_at")),
        updated_at=_time(model.get("updated_at")),
    )
    stats.revisions += 1
    for coord in model["super_weights"]:
        existing = sw_service.find_coordinate(rev, coord["tensor"], coord["index"])
        fields, created_at, updated_at = coordinate_update(existing, coord)
        _, outcome = sw_service.upsert_coordinate(
            rev, fields, created_at=created_at, updated_at=updated_at
        )
        stats.coordinates[outcome] += 1
    for found in model.get("super_experts", []):
        expert = sw_service.find_super_expert(rev, found["layer"], found["expert"])
        fields, created_at, updated_at = super_expert_update(expert, found)
        _, outcome = sw_service.upsert_super_expert(
            rev, fields, created_at=created_at, updated_at=updated_at
        )
        stats.super_experts[outcome] += 1


Update = tuple[dict[str, Any], datetime | None, datetime | None]


def coordinate_update(existing, coord: dict[str, Any]) -> Update:
    """What importing a document's coordinate sets on its row (`existing`: the row as it is, or
    None): the fields, and the times to stamp (None: now, where anything changed). The one
    definition for the row-by-row import and the bulk one (registry.index.bulk)."""
    fields = coordinate_fields(coord)
    created_at, updated_at = provenance_times(coord)
    if _both_claims(existing, coord["state"]):
        fields = _merged_claim(existing, fields)
        created_at = updated_at = None  # a merge is a change made now
    return fields, created_at, updated_at


def super_expert_update(existing, found: dict[str, Any]) -> Update:
    """As `coordinate_update`, for a super expert: two claims about the same (layer, expert) are
    merged as coordinates' are."""
    fields = super_expert_fields(found)
    created_at, updated_at = provenance_times(found)
    if _both_claims(existing, found["state"]):
        fields = {
            **fields,
            "state": merged_claim_state(existing.state, fields["state"]),
            "citation": existing.citation or fields["citation"],
            "sources": canonical_sources(existing.sources, fields["sources"]),
            "disputed_with": canonical_experts(existing.disputed_with, fields["disputed_with"]),
            "reproduced_in": sorted({*(existing.reproduced_in or []), *fields["reproduced_in"]}),
        }
        created_at = updated_at = None
    return fields, created_at, updated_at


def _stored_citation(provenance: dict[str, Any]) -> str | None:
    """What is stored of a citation: swreg's own is derived from the detector version on every
    read (documents.citation_of), so it is not stored, and export → import → export keeps it."""
    citation = provenance.get("citation")
    if is_swreg_citation(citation, provenance.get("detector_version")):
        return None
    return citation


def _both_claims(existing, state: str) -> bool:
    return existing is not None and existing.state in CLAIM_STATES and state in CLAIM_STATES


def _merged_claim(existing, fields: dict[str, Any]) -> dict[str, Any]:
    """A second source's claim about a coordinate already stated by another: the sources and the
    disputes of both, the stronger state, the first citation, every reproduction."""
    return {
        **fields,
        "state": merged_claim_state(existing.state, fields["state"]),
        "citation": existing.citation or fields["citation"],
        "sources": canonical_sources(existing.sources, fields["sources"]),
        "disputed_with": canonical_places(existing.disputed_with, fields["disputed_with"]),
        "reproduced_in": sorted({*(existing.reproduced_in or []), *fields["reproduced_in"]}),
    }
