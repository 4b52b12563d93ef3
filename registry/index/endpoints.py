"""The whole registry as one JSON index document (the same bytes `swreg export` writes), and
its JSON Schema. Both answer through registry.caching (strong ETag, 304, gzip)."""

from functools import cache

from fastapi import APIRouter, Request, Response

from registry.caching import Entity, cached_response, cached_responses
from registry.index.serving import stream_index
from workers.contract.resources import INDEX_SCHEMA_PATH

router = APIRouter(tags=["index"])

SCHEMA_MEDIA_TYPE = "application/schema+json"
# The schema ships with the code: it changes only with a new version of swreg.
SCHEMA_CACHE_CONTROL = "public, max-age=3600"


@router.get(
    "/index",
    response_class=Response,
    responses={
        200: {
            "description": "The JSON index, streamed; its JSON Schema is served at "
            "/api/v1/index/schema. meta.generated_at (and Last-Modified) is the time of the "
            "last change to what it contains; the strong ETag names the data version.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **cached_responses(),
    },
)
async def get_index(request: Request) -> Response:
    """Every model revision and coordinate, in the JSON index format."""
    return await stream_index(request)


@cache
def _schema_entity() -> Entity:
    return Entity.of(INDEX_SCHEMA_PATH.read_bytes(), SCHEMA_MEDIA_TYPE)


@router.get(
    "/index/schema",
    response_class=Response,
    responses={
        200: {
            "description": "JSON Schema (draft 2020-12)",
            "content": {SCHEMA_MEDIA_TYPE: {"schema": {"type": "object"}}},
        },
        304: {"description": "Not modified: the If-None-Match ETag is current"},
    },
)
async def get_index_schema(request: Request) -> Response:
    """The JSON Schema (draft 2020-12) of the index."""
    return cached_response(request, _schema_entity(), cache_control=SCHEMA_CACHE_CONTROL)
