"""A generated registry for measurements and scale tests: N models × revisions × coordinates,
each revision with a per-layer profile, written as an index document (schema version 2).

Every model is in the exact shape export writes (all fields, canonical order), so that importing
a generated document and exporting it again gives the same bytes. Deterministic: the same
arguments always give the same document. Sizes follow a detection report of a 30-layer model
(SmolLM2-135M's shape): ~70 KB of text per revision, most of it the profile.
"""

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from registry.citation import swreg_citation
from registry.index.stream import iter_text, meta_document
from registry.superweights.documents import format_time

DEFAULT_REVISIONS = 2
DEFAULT_COORDINATES = 3
DEFAULT_LAYERS = 30
# Every generated time is after this one, one second per model.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
MODEL_PREFIX = "gen"
D_MODEL, D_FF = 576, 1536
PROMPTS = ["Apple Inc. is a worldwide tech company."]
# The detector version the generated revisions claim.
DETECTOR_VERSION = "0.1.0"


def model_id(i: int) -> str:
    return f"{MODEL_PREFIX}/model-{i:07d}"


def revision_sha(i: int, r: int) -> str:
    return hashlib.sha1(f"{i}:{r}".encode()).hexdigest()


def _score(perplexity: float) -> dict[str, Any]:
    return {"perplexity": perplexity, "tokens": 1023, "mean_kl_from_baseline": 0.0}


def _coordinate(layer: int, row: int, col: int, when: str | None) -> dict[str, Any]:
    return {
        "tensor": f"model.layers.{layer}.mlp.down_proj.weight",
        "index": [row, col],
        "layer": layer,
        "module": "mlp.down_proj",
        "row": row,
        "col": col,
        "expert": None,
        "value": 5.875,
        "dtype": "float32",
        "state": "verified",
        "evidence": {
            "prompts": PROMPTS,
            "validation": {
                "baseline": _score(20.1875),
                "ablated": _score(378.5),
                "controls": {"random": _score(20.1875), "top_k": _score(21.5)},
                "verdict": {
                    "state": "verified",
                    "reason": "zeroing it multiplies perplexity by 18.75",
                },
            },
        },
        "provenance": {
            # swreg's own verified coordinates cite swreg at the detector version (as exported).
            "citation": swreg_citation(DETECTOR_VERSION),
            "sources": [],
            "disputed_with": [],
            "detector_version": DETECTOR_VERSION,
            "reproduced_in": [],
            "retraction_reason": None,
            "retracted_at": None,
            "created_at": when,
            "updated_at": when,
        },
    }


def _layer(layer: int, spike_layer: int) -> dict[str, Any]:
    spike = layer == spike_layer
    entry = {
        "max_abs_input": 2996.0 if spike else 3.0 + layer,
        "input_token": 0,
        "input_col": 1229 if spike else layer,
        "max_abs_output": 24022.0 if spike else 10.5 + layer,
        "output_token": 0,
        "output_row": 507 if spike else layer + 2,
        "output_percentiles": {"p50": 0.125, "p99": 1.5, "p99.9": 5.25},
        "spike_ratio": None if layer == 0 else (785.0 if spike else 1.0),
    }
    return {
        "layer": layer,
        **entry,
        "max_abs_output_per_prompt": [entry["max_abs_output"]],
        "spike": spike,
        "prompts": [{"prompt": 0, **entry}],
    }


def revision_model(i: int, r: int, *, coordinates: int, layers: int) -> dict[str, Any]:
    when = format_time(EPOCH + timedelta(seconds=i))
    spike_layer = 1 + (i + r) % max(1, layers - 1)
    coords = [
        _coordinate(spike_layer, (i * 7 + k) % D_MODEL, (i * 13 + k * 101) % D_FF, when)
        for k in range(coordinates)
    ]
    coords.sort(key=lambda c: (c["layer"], -1, c["tensor"], c["index"]))
    return {
        "model_id": model_id(i),
        "revision": revision_sha(i, r),
        "revision_kind": "commit",
        "architecture": "LlamaForCausalLM",
        "dtype": "float32",
        "num_layers": layers,
        "weight_files": [{"name": "model.safetensors", "sha256": "d" * 64, "size": 538_000_000}],
        "profile": {
            "detector_version": DETECTOR_VERSION,
            "prompts": PROMPTS,
            "super_activation_ratio": 50.0,
            "layers": [_layer(layer, spike_layer) for layer in range(layers)],
        },
        "quantization_check": None,
        "created_at": when,
        "updated_at": when,
        "super_weights": coords,
        "super_experts": [],
    }


def generated_models(
    n: int,
    *,
    revisions: int = DEFAULT_REVISIONS,
    coordinates: int = DEFAULT_COORDINATES,
    layers: int = DEFAULT_LAYERS,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """Models `start`..`start+n-1`, in the index's (model_id, revision) order."""
    for i in range(start, start + n):
        models = [
            revision_model(i, r, coordinates=coordinates, layers=layers) for r in range(revisions)
        ]
        yield from sorted(models, key=lambda m: m["revision"])


def last_time(n: int, start: int = 0) -> datetime:
    return EPOCH + timedelta(seconds=start + n - 1) if n else EPOCH


def iter_generated(n: int, **options: int) -> Iterator[str]:
    """The text of a generated index document."""
    meta = meta_document(last_time(n, options.get("start", 0)))
    return iter_text(meta, generated_models(n, **options))


def write_generated(path: Path, n: int, **options: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        for piece in iter_generated(n, **options):
            handle.write(piece)
    return path
