"""Read endpoints: list models, look up the coordinates of one model (and revision).

Both answer through registry.caching: the JSON body is built once per data version and served
with a strong ETag (304 on If-None-Match), Cache-Control and gzip.
"""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from registry.bounds import Limit, Offset
from registry.caching import (
    PINNED,
    REVALIDATE,
    Entity,
    ResponseCache,
    ResponseCacheDep,
    cached_response,
    cached_responses,
)
from registry.data_version import current_version
from registry.dependencies import Database, DatabaseDep
from registry.superweights import service
from registry.superweights.schemas import REVISION_PATTERN, ModelLookup, ModelPage
from workers.sources.pinning import check_model_id

router = APIRouter(tags=["super weights"])

JSON = "application/json"


def json_bytes(document: Any) -> bytes:
    """The JSON text FastAPI's JSONResponse would send (compact, UTF-8, strict)."""
    return json.dumps(
        document, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


@router.get("/models", response_model=ModelPage, responses=cached_responses())
async def list_models(
    request: Request,
    database: DatabaseDep,
    cache: ResponseCacheDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    """Model ids in the registry (sorted), with their revisions and coordinate counts."""
    entity = await database.call(_models_page, database, cache, limit, offset)
    return cached_response(request, entity, cache_control=REVALIDATE)


def _models_page(database: Database, cache: ResponseCache, limit: int, offset: int) -> Entity:
    with database.engine.connect() as connection:
        version = current_version(connection)

        def build() -> Entity:
            with Session(bind=connection) as session:
                total, items = service.list_models(session, limit=limit, offset=offset)
            page = {"total": total, "limit": limit, "offset": offset, "items": items}
            return Entity.of(json_bytes(page), JSON)

        return cache.get_or_build(("models", limit, offset), version, build)


@router.get(
    "/models/{model_id:path}",
    response_model=ModelLookup,
    responses=cached_responses(404, e404="Unknown model, or no such revision of it"),
)
async def get_model(
    request: Request,
    database: DatabaseDep,
    cache: ResponseCacheDep,
    model_id: str,
    revision: Annotated[
        str | None,
        Query(
            pattern=REVISION_PATTERN,
            description="A full 40-hex commit sha, sha256:<64 hex> or unknown",
        ),
    ] = None,
) -> Response:
    """Every revision of a model (e.g. `huggyllama/llama-7b`) with its super-weight
    coordinates, their states, evidence and provenance. `model_id` follows the Hub's rules."""
    check_model_id(model_id)
    entity = await database.call(_lookup, database, cache, model_id, revision)
    pinned = revision is not None and revision != "unknown"
    return cached_response(request, entity, cache_control=PINNED if pinned else REVALIDATE)


def _lookup(
    database: Database, cache: ResponseCache, model_id: str, revision: str | None
) -> Entity:
    with database.engine.connect() as connection:
        version = current_version(connection)

        def build() -> Entity:
            with Session(bind=connection) as session:
                document = service.lookup_document(session, model_id, revision)
            return Entity.of(json_bytes(document), JSON)

        return cache.get_or_build(("model", model_id, revision), version, build)
