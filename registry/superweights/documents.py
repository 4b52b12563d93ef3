"""The JSON form of a model revision and its coordinates.

One shape serves the JSON index (`swreg export`), the HTTP lookup and `swreg lookup --json`, so a
client parses all three the same way. Everything here is deterministic: coordinates are sorted by
(layer, expert, tensor, index) with numbers compared as numbers, super experts by (layer, expert),
and timestamps are UTC with whole seconds.
"""

import math
from typing import Any

from registry.citation import swreg_citation
from registry.clock import TIME_FORMAT, format_time, parse_time  # noqa: F401 (re-exported)
from registry.superweights.models import ModelRevision, SuperExpert, SuperWeight
from workers.contract.report import Report

# Where a number may be non-finite (a largest |output| that overflowed), JSON carries a string,
# as the report's evidence does.
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NON_FINITE[value]


def parse_number(value: float | str | None) -> float | None:
    return float(value) if isinstance(value, str) else value


def citation_of(found: SuperWeight | SuperExpert) -> str | None:
    """A coordinate's (or super expert's) citation: its sources' (published, reported), or, once
    swreg verified it, swreg at the detector version that did."""
    if found.citation is None and found.state == "verified" and found.detector_version:
        return swreg_citation(found.detector_version)
    return found.citation


def coordinate_sort_key(sw: SuperWeight) -> tuple:
    """By layer, then routed expert (dense and shared-expert weights first), then tensor and
    index: layer 10 after layer 2, expert 10 after expert 2."""
    expert = -1 if sw.expert is None else sw.expert
    return (sw.layer, expert, sw.tensor, list(sw.index))


def coordinate_document(sw: SuperWeight) -> dict[str, Any]:
    return {
        "tensor": sw.tensor,
        "index": list(sw.index),
        "layer": sw.layer,
        "module": sw.module,
        "row": sw.row,
        "col": sw.col,
        "expert": sw.expert,
        "value": sw.value,
        "dtype": sw.dtype,
        "state": sw.state,
        "evidence": sw.evidence or {},
        "provenance": {
            "citation": citation_of(sw),
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


def super_expert_sort_key(se: SuperExpert) -> tuple[int, int]:
    return (se.layer, se.expert)


def super_expert_document(se: SuperExpert) -> dict[str, Any]:
    return {
        "layer": se.layer,
        "expert": se.expert,
        "module": se.module,
        "state": se.state,
        "max_abs_output": json_number(se.max_abs_output),
        "spike_ratio": json_number(se.spike_ratio),
        "row": se.row,
        "tokens_routed": se.tokens_routed,
        "evidence": se.evidence or {},
        "provenance": {
            "citation": citation_of(se),
            "sources": [dict(source) for source in se.sources or []],
            "disputed_with": [dict(place) for place in se.disputed_with or []],
            "detector_version": se.detector_version,
            "reproduced_in": list(se.reproduced_in or []),
            "retraction_reason": se.retraction_reason,
            "retracted_at": format_time(se.retracted_at),
            "created_at": format_time(se.created_at),
            "updated_at": format_time(se.updated_at),
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
        "super_experts": [
            super_expert_document(se) for se in sorted(rev.super_experts, key=super_expert_sort_key)
        ],
        # Present only when known (optional fields of the index, docs/compatibility.md): a
        # revision whose card names no base reads, and exports, as it did before lineage.
        **({"base_model": rev.base_model} if rev.base_model is not None else {}),
        **({"lineage_check": rev.lineage_check} if rev.lineage_check is not None else {}),
    }


def profile_document(report: Report) -> dict[str, Any]:
    """What a revision stores of a detection report's profile: the prompts it ran, the ratio a
    super activation must reach, and one `LayerProfile` per layer (non-finite numbers as
    strings, like the evidence). A mixture-of-experts report adds `experts`: one `ExpertProfile`
    per layer with routed experts (the tokens routed to each expert and its largest |down-projection
    output|), what the per-layer/per-expert heat map draws; a dense report has no such key."""
    document = {
        "detector_version": report.detector.version,
        "prompts": list(report.prompts),
        "super_activation_ratio": report.rules.get("super_activation_ratio"),
        "layers": [layer.as_json_dict() for layer in report.profile],
    }
    if report.expert_profile:
        document["experts"] = [
            layer.as_json_dict() for layer in sorted(report.expert_profile, key=lambda p: p.layer)
        ]
    return document


def revision_sort_key(rev: ModelRevision) -> tuple[str, str]:
    return (rev.model_id, rev.revision)
