"""The JSON form of a model revision and its coordinates.

One shape serves the JSON index (`swreg export`), the HTTP lookup and `swreg lookup --json`, so a
client parses all three the same way. Everything here is deterministic: coordinates are sorted by
(tensor, index) and timestamps are UTC with whole seconds.
"""

from datetime import datetime
from typing import Any

from registry.clock import as_utc
from registry.errors import InvalidInput
from registry.superweights.models import ModelRevision, SuperWeight
from workers.contract.report import Report

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise InvalidInput(f"time without a time zone: {text!r} (add Z for UTC)")
    return as_utc(value).replace(microsecond=0)


def coordinate_sort_key(sw: SuperWeight) -> tuple:
    return (sw.tensor, list(sw.index))


def coordinate_document(sw: SuperWeight) -> dict[str, Any]:
    return {
        "tensor": sw.tensor,
        "index": list(sw.index),
        "layer": sw.layer,
        "module": sw.module,
        "row": sw.row,
        "col": sw.col,
        "value": sw.value,
        "dtype": sw.dtype,
        "state": sw.state,
        "evidence": sw.evidence or {},
        "provenance": {
            "citation": sw.citation,
            "sources": [dict(source) for source in sw.sources or []],
            "disputed_with": [dict(place) for place in sw.disputed_with or []],
            "detector_version": sw.detector_version,
            "reproduced_in": list(sw.reproduced_in or []),
            "retraction_reason": sw.retraction_reason,
            "retracted_at": format_time(sw.retracted_at),
            "created_at": format_time(sw.created_at),
            "updated_at": format_time(sw.updated_at),
        },
    }


def revision_document(rev: ModelRevision) -> dict[str, Any]:
    return {
        "model_id": rev.model_id,
        "revision": rev.revision,
        "revision_kind": rev.revision_kind,
        "architecture": rev.architecture,
        "dtype": rev.dtype,
        "num_layers": rev.num_layers,
        "weight_files": list(rev.weight_files or []),
        "profile": rev.profile,
        "quantization_check": rev.quantization_check,
        "created_at": format_time(rev.created_at),
        "updated_at": format_time(rev.updated_at),
        "super_weights": [
            coordinate_document(sw) for sw in sorted(rev.super_weights, key=coordinate_sort_key)
        ],
    }


def profile_document(report: Report) -> dict[str, Any]:
    """What a revision stores of a detection report's profile: the prompts it ran, the ratio a
    super activation must reach, and one `LayerProfile` per layer (non-finite numbers as
    strings, like the evidence)."""
    return {
        "detector_version": report.detector.version,
        "prompts": list(report.prompts),
        "super_activation_ratio": report.rules.get("super_activation_ratio"),
        "layers": [layer.as_json_dict() for layer in report.profile],
    }


def revision_sort_key(rev: ModelRevision) -> tuple[str, str]:
    return (rev.model_id, rev.revision)
