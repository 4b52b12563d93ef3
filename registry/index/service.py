"""Export the registry as one JSON document and import such a document.

The document format is fixed by data/index.schema.json (JSON Schema, draft 2020-12). Export is
deterministic (sorted models, coordinates and keys; fixed indent; a trailing newline) so that
export → import into an empty database → export gives the same bytes. Import validates the whole
document before it writes anything, and writes it in the caller's single transaction.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sqlalchemy.orm import Session

from registry import __version__
from registry.clock import utcnow_seconds
from registry.errors import InvalidInput
from registry.superweights import service as sw_service
from registry.superweights.documents import (
    format_time,
    parse_time,
    revision_document,
    revision_sort_key,
)
from registry.superweights.models import index_key
from workers.contract.resources import INDEX_SCHEMA_PATH

SCHEMA_VERSION = 1
GENERATOR_NAME = "swreg"


@lru_cache
def schema() -> dict[str, Any]:
    return json.loads(INDEX_SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _pointer(path) -> str:
    # RFC 6901: "~" and "/" inside a key are escaped.
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "/"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- export -----------------------------------------------------------------------------------


def export_document(session: Session, *, generated_at: datetime | None = None) -> dict[str, Any]:
    revisions = sorted(sw_service.all_revisions(session), key=revision_sort_key)
    return {
        "meta": {
            "schema_version": SCHEMA_VERSION,
            "generated_at": format_time(generated_at or utcnow_seconds()),
            "generator": {"name": GENERATOR_NAME, "version": __version__},
        },
        "models": [revision_document(rev) for rev in revisions],
    }


def dumps(document: dict[str, Any]) -> str:
    """The canonical text of an index document."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return text + "\n"


# --- validation -------------------------------------------------------------------------------


def validate_document(document: Any, source: str = "index") -> None:
    """Raise InvalidInput with one line naming the first problem and its JSON pointer."""
    error = best_match(_validator().iter_errors(document))
    if error is not None:
        raise InvalidInput(
            f"invalid {source}: at {_pointer(error.absolute_path)}: {_one_line(error.message)}"
        )
    # What a schema cannot say: no model revision and no coordinate may appear twice.
    seen_revisions: set[tuple[str, str]] = set()
    for i, model in enumerate(document["models"]):
        key = (model["model_id"], model["revision"])
        if key in seen_revisions:
            raise InvalidInput(
                f"invalid {source}: at /models/{i}: {key[0]} at revision {key[1]} appears twice"
            )
        seen_revisions.add(key)
        seen_coords: set[tuple[str, str]] = set()
        for j, coord in enumerate(model["super_weights"]):
            ckey = (coord["tensor"], index_key(coord["index"]))
            if ckey in seen_coords:
                raise InvalidInput(
                    f"invalid {source}: at /models/{i}/super_weights/{j}: "
                    f"{coord['tensor']} {coord['index']} appears twice"
                )
            seen_coords.add(ckey)


def load_file(path: str | Path) -> dict[str, Any]:
    """Read and validate an index file; every failure is one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {_one_line(str(exc))}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"invalid {path}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    validate_document(document, source=str(path))
    return document


# --- import -----------------------------------------------------------------------------------


@dataclass
class ImportStats:
    revisions: int = 0
    coordinates: dict[str, int] = field(
        default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0}
    )

    def summary(self) -> str:
        c = self.coordinates
        return (
            f"{self.revisions} model revisions, {sum(c.values())} coordinates "
            f"({c['created']} new, {c['updated']} updated, {c['unchanged']} unchanged)"
        )


def _time(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


def import_document(session: Session, document: dict[str, Any]) -> ImportStats:
    """Upsert every revision and coordinate of a document (validated here too). Idempotent:
    importing the same document twice leaves the database as importing it once."""
    validate_document(document)
    stats = ImportStats()
    for model in document["models"]:
        rev, _ = sw_service.upsert_revision(
            session,
            model_id=model["model_id"],
            revision=model["revision"],
            fields={
                "architecture": model.get("architecture"),
                "dtype": model.get("dtype"),
                "num_layers": model.get("num_layers"),
                "weight_files": model.get("weight_files", []),
                # Only when the document says: an index written before the check existed
                # leaves a recorded check alone.
                **(
                    {"quantization_check": model["quantization_check"]}
                    if "quantization_check" in model
                    else {}
                ),
            },
            created_at=_time(model.get("created_at")),
            updated_at=_time(model.get("updated_at")),
        )
        stats.revisions += 1
        for coord in model["super_weights"]:
            prov = coord.get("provenance", {})
            _, outcome = sw_service.upsert_coordinate(
                rev,
                {
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
                    "citation": prov.get("citation"),
                    "detector_version": prov.get("detector_version"),
                    "reproduced_in": sorted(prov.get("reproduced_in", [])),
                    "retraction_reason": prov.get("retraction_reason"),
                    "retracted_at": _time(prov.get("retracted_at")),
                },
                created_at=_time(prov.get("created_at")),
                updated_at=_time(prov.get("updated_at")),
            )
            stats.coordinates[outcome] += 1
    session.flush()
    return stats
