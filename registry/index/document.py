"""The JSON index document itself, without the database: its schema, its canonical text, its
validation and reading it from a file. What the light client (`swreg.Index`, `swreg export
--api`) needs; export and import (`registry.index.service`) build on it.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from registry.clock import parse_time
from registry.errors import InvalidInput
from workers.contract.resources import INDEX_SCHEMA_PATH

# The version export writes; READABLE_VERSIONS are those import accepts (docs/coordinates.md).
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
GENERATOR_NAME = "swreg"
# `generated_at` of an empty registry: nothing has changed since the epoch.
EMPTY_REGISTRY_TIME = datetime(1970, 1, 1, tzinfo=UTC)


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


# --- the canonical text ----------------------------------------------------------------------


def index_key(index: list[int]) -> str:
    """A coordinate's index as one text (what makes a coordinate unique in its revision)."""
    return ",".join(str(int(i)) for i in index)


def dumps(document: dict[str, Any]) -> str:
    """The canonical text of an index document."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def _times(document: dict[str, Any]) -> Iterator[tuple[tuple, str]]:
    """Every time in a document that passed the schema, with its path."""
    yield ("meta", "generated_at"), document["meta"]["generated_at"]
    for i, model in enumerate(document["models"]):
        for name in ("created_at", "updated_at"):
            if model.get(name) is not None:
                yield ("models", i, name), model[name]
        for j, coord in enumerate(model["super_weights"]):
            provenance = coord.get("provenance", {})
            for name in ("created_at", "updated_at", "retracted_at"):
                if provenance.get(name) is not None:
                    path = ("models", i, "super_weights", j, "provenance", name)
                    yield path, provenance[name]
        for j, found in enumerate(model.get("super_experts", [])):
            provenance = found.get("provenance", {})
            for name in ("created_at", "updated_at", "retracted_at"):
                if provenance.get(name) is not None:
                    path = ("models", i, "super_experts", j, "provenance", name)
                    yield path, provenance[name]


def _version_1_extras(document: Any) -> Iterator[tuple]:
    """Where a document that says schema version 1 carries a field version 1 did not have (the
    schema refuses it too, but would quote the whole offending value)."""
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        return
    meta = document.get("meta")
    if not isinstance(meta, dict) or meta.get("schema_version") != 1:
        return
    for i, model in enumerate(document["models"]):
        if not isinstance(model, dict):
            continue
        if "super_experts" in model:
            yield ("models", i, "super_experts")
        for j, coord in enumerate(model.get("super_weights") or []):
            if isinstance(coord, dict) and "expert" in coord:
                yield ("models", i, "super_weights", j, "expert")


def validate_document(document: Any, source: str = "index") -> None:
    """Raise InvalidInput with one line naming the first problem and its JSON pointer."""
    for path in _version_1_extras(document):
        raise InvalidInput(
            f"invalid {source}: at {_pointer(path)}: schema version 1 has no {path[-1]} "
            "(documents with experts are schema version 2)"
        )
    error = best_match(_validator().iter_errors(document))
    if error is not None:
        raise InvalidInput(
            f"invalid {source}: at {_pointer(error.absolute_path)}: {_one_line(error.message)}"
        )
    # The schema's pattern admits times that do not exist (2026-02-30): found here, before the
    # import writes anything, rather than by the import half-way through.
    _check_times(document, source)
    # What a schema cannot say: no model revision and no coordinate may appear twice.
    seen_revisions: set[tuple[str, str]] = set()
    for i, model in enumerate(document["models"]):
        check_new_revision(model, i, seen_revisions, source)
        check_model_places(model, i, source)


def _check_times(document: dict[str, Any], source: str, first: int = 0) -> None:
    for path, value in _times(document):
        try:
            parse_time(value)
        except InvalidInput as exc:
            if path[0] == "models":
                path = ("models", path[1] + first, *path[2:])
            raise InvalidInput(f"invalid {source}: at {_pointer(path)}: {exc}") from None


def check_new_revision(
    model: dict[str, Any], i: int, seen: set[tuple[str, str]], source: str
) -> None:
    """A model revision may appear once in a document (`seen`: those before it)."""
    key = (model["model_id"], model["revision"])
    if key in seen:
        raise InvalidInput(
            f"invalid {source}: at /models/{i}: {key[0]} at revision {key[1]} appears twice"
        )
    seen.add(key)


def check_model_places(model: dict[str, Any], i: int, source: str) -> None:
    """No coordinate or super expert twice in a revision, none disputing itself, and no
    revision naming its own model as its base."""
    if model.get("base_model") == model["model_id"]:
        raise InvalidInput(
            f"invalid {source}: at /models/{i}/base_model: {model['model_id']} cannot be its "
            "own base model"
        )
    seen_coords: set[tuple[str, str]] = set()
    for j, coord in enumerate(model["super_weights"]):
        ckey = (coord["tensor"], index_key(coord["index"]))
        places = coord.get("provenance", {}).get("disputed_with", [])
        if any((p["tensor"], index_key(p["index"])) == ckey for p in places):
            raise InvalidInput(
                f"invalid {source}: at /models/{i}/super_weights/{j}/provenance/disputed_with: "
                "a coordinate cannot dispute itself"
            )
        if ckey in seen_coords:
            raise InvalidInput(
                f"invalid {source}: at /models/{i}/super_weights/{j}: "
                f"{coord['tensor']} {coord['index']} appears twice"
            )
        seen_coords.add(ckey)
    seen_experts: set[tuple[int, int]] = set()
    for j, found in enumerate(model.get("super_experts", [])):
        ekey = (found["layer"], found["expert"])
        places = found.get("provenance", {}).get("disputed_with", [])
        if any((p["layer"], p["expert"]) == ekey for p in places):
            raise InvalidInput(
                f"invalid {source}: at /models/{i}/super_experts/{j}/provenance/disputed_with: "
                "a super expert cannot dispute itself"
            )
        if ekey in seen_experts:
            raise InvalidInput(
                f"invalid {source}: at /models/{i}/super_experts/{j}: expert {ekey[1]} of "
                f"layer {ekey[0]} appears twice"
            )
        seen_experts.add(ekey)


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
