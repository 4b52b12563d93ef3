"""Read endpoints: list models, look up the coordinates of one model (and revision).

Both answer through registry.caching: the JSON body is built once per data version and served
with a strong ETag (304 on If-None-Match), Cache-Control and gzip.
"""

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from registry.bounds import Limit, Offset
from registry.caching import (
    PINNED,
    REVALIDATE,
    Entity,
    cached_entity,
    cached_response,
    cached_responses,
)
from registry.superweights import service
from registry.superweights.schemas import REVISION_PATTERN, ModelLookup, ModelPage
from workers.sources.pinning import MAX_MODEL_ID_CHARS, MODEL_ID_PATTERN, check_model_id

router = APIRouter(tags=["super weights"])

JSON = "application/json"


def json_bytes(document: Any) -> bytes:
    """The JSON text FastAPI's JSONResponse would send (compact, UTF-8, strict)."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@router.get("/models", response_model=ModelPage, responses=cached_responses())
async def list_models(request: Request, limit: Limit = 50, offset: Offset = 0) -> Response:
    """Model ids in the registry (sorted), with their revisions and coordinate counts."""

    def build(session: Session) -> Entity:
        total, items = service.list_models(session, limit=limit, offset=offset)
        page = {"total": total, "limit": limit, "offset": offset, "items": items}
        return Entity.of(json_bytes(page), JSON)

    entity = await cached_entity(request, ("models", limit, offset), build)
    return cached_response(request, entity, cache_control=REVALIDATE)


# The lookup is the hot path, and FastAPI's parameter solving costs more than the rest of a
# cached lookup together (docs/measurements.md): it reads its path and query itself, checks them
# by the same rules, and documents them here.
LOOKUP_PARAMETERS = [
    {
        "name": "model_id",
        "in": "path",
        "required": True,
        "description": "A Hub repository id (its rules: `name` or `namespace/name`, letters, "
        "digits, '-', '_', '.', at most 96 characters a part, no '--' or '..')",
        "schema": {
            "type": "string",
            "maxLength": MAX_MODEL_ID_CHARS,
            "pattern": MODEL_ID_PATTERN,
            "examples": ["huggyllama/llama-7b"],
        },
    },
    {
        "name": "revision",
        "in": "query",
        "required": False,
        "description": "A full 40-hex commit sha, sha256:<64 hex> or unknown",
        "schema": {"type": "string", "pattern": REVISION_PATTERN},
    },
]


@router.get(
    "/models/{model_id:path}",
    response_model=ModelLookup,
    responses=cached_responses(404, e404="Unknown model, or no such revision of it"),
    openapi_extra={"parameters": LOOKUP_PARAMETERS},
)
async def get_model(request: Request) -> Response:
    """Every revision of a model (e.g. `huggyllama/llama-7b`) with its super-weight
    coordinates, their states, evidence and provenance; one revision with `?revision=`."""
    model_id = check_model_id(request.path_params["model_id"])
    revision = request.query_params.get("revision")
    if revision is not None:
        service.revision_kind_of(revision)  # InvalidInput (422) unless a well-formed revision

    def build(session: Session) -> Entity:
        return Entity.of(json_bytes(service.lookup_document(session, model_id, revision)), JSON)

    entity = await cached_entity(request, ("model", model_id, revision), build)
    pinned = revision is not None and revision != "unknown"
    return cached_response(request, entity, cache_control=PINNED if pinned else REVALIDATE)
