"""Read endpoints: list models, look up the coordinates and super experts of one model (and
revision), a revision's per-layer profile, and the plots of a revision and of a coordinate.

The JSON answers go through registry.caching: the body is built once per data version and served
with a strong ETag (304 on If-None-Match), Cache-Control and gzip. A plot's inputs are read
within the database timeout and the figure is drawn outside it (registry.web.png_cache keeps the
drawn bytes per input), then served with the same validators.

The routes under /models/{model_id}/revisions/... come before the lookup's /models/{model_id}:
a model id holds a slash, so the lookup's path pattern would take them too.
"""

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from registry.bounds import DeprecatedOffset, Limit
from registry.caching import (
    PINNED,
    REVALIDATE,
    Entity,
    cached_entity,
    cached_response,
    cached_responses,
)
from registry.dependencies import DatabaseDep
from registry.errors import NotFound
from registry.superweights import service
from registry.superweights.models import ModelRevision
from registry.superweights.schemas import (
    REVISION_PATTERN,
    ModelLookup,
    ModelPage,
    ProfileOut,
    RevisionMatches,
)
from registry.web import png_cache
from workers.sources.pinning import MAX_MODEL_ID_CHARS, MODEL_ID_PATTERN, check_model_id

router = APIRouter(tags=["super weights"])

JSON = "application/json"


def json_bytes(document: Any) -> bytes:
    """The JSON text FastAPI's JSONResponse would send (compact, UTF-8, strict)."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


Search = Annotated[
    str | None, Query(max_length=255, description="Only model ids containing this text")
]
# The Hub's id rule needs look-ahead, which pydantic's regex engine lacks: the pattern is
# published in the OpenAPI document and enforced by check_model_id in each route.
ModelIdPath = Annotated[
    str,
    Path(
        max_length=MAX_MODEL_ID_CHARS,
        description="A Hub repository id, e.g. huggyllama/llama-7b",
        json_schema_extra={"pattern": MODEL_ID_PATTERN},
    ),
]
RevisionPath = Annotated[
    str,
    Path(pattern=REVISION_PATTERN, description="A full 40-hex commit sha or sha256:<64 hex>"),
]
# A coordinate's index in a URL: 1 to 4 non-negative integers, comma-separated.
INDEX_PATTERN = r"^[0-9]{1,10}(,[0-9]{1,10}){0,3}$"
PNG = "image/png"
_PNG_RESPONSES = {
    200: {"content": {PNG: {}}, "description": "A PNG image (strong ETag)"},
    **cached_responses(404, e404="Unknown model, revision or coordinate, or nothing to draw"),
}


ModelCursor = Annotated[
    str | None,
    Query(
        max_length=MAX_MODEL_ID_CHARS,
        description="The `next` of the previous page (a model id): the models after it",
        # Empty (`after=`) is the first page, as `q=` is no search.
        json_schema_extra={"pattern": f"^$|{MODEL_ID_PATTERN}"},
        examples=["huggyllama/llama-7b"],
    ),
]


@router.get("/models", response_model=ModelPage, responses=cached_responses())
async def list_models(
    request: Request,
    limit: Limit = 50,
    after: ModelCursor = None,
    q: Search = None,
    offset: DeprecatedOffset = 0,
) -> Response:
    """Model ids in the registry in binary (code point) order, with their revisions and
    coordinate counts. Paginated by key: the next page is `?after=` the page's `next` (null on
    the last page), with the same `q`; models added meanwhile after the cursor are on a later
    page, and none is seen twice."""
    search = (q or "").strip() or None
    after = after or None  # `after=` (empty): from the start, as `q=` is no search
    if after is not None:
        service.check_model_cursor(after)  # InvalidInput (422) before any database work

    def build(session: Session) -> Entity:
        page = service.models_page(session, limit=limit, offset=offset, after=after, search=search)
        return Entity.of(json_bytes(page), JSON)

    entity = await cached_entity(request, ("models", limit, offset, after, search), build)
    return cached_response(request, entity, cache_control=REVALIDATE)


@router.get(
    "/models/{model_id:path}/revisions/{revision}/profile",
    response_model=ProfileOut,
    responses=cached_responses(404, e404="Unknown model or revision, or no profile recorded"),
)
async def get_profile(request: Request, model_id: ModelIdPath, revision: RevisionPath) -> Response:
    """The per-layer profile of the detection run that recorded this revision: for every
    layer's down projection, the largest |input| and |output| with their channel and token, the
    spike ratio and |output| percentiles, for the first prompt and for each prompt."""
    check_model_id(model_id)

    def build(session: Session) -> Entity:
        rev = service.get_revision(session, model_id, revision)
        if not rev.profile:
            raise NotFound(f"no per-layer profile for {model_id} at {revision}")
        return Entity.of(json_bytes(rev.profile), JSON)

    entity = await cached_entity(request, ("profile", model_id, revision), build)
    return cached_response(request, entity, cache_control=PINNED)


@router.get(
    "/models/{model_id:path}/revisions/{revision}/plots/profile.png",
    response_class=Response,
    responses=_PNG_RESPONSES,
)
async def get_profile_plot(
    request: Request, database: DatabaseDep, model_id: ModelIdPath, revision: RevisionPath
) -> Response:
    """Per layer, the largest |down_proj input| and |output| on a log scale, one line per
    prompt, with the super activations and the coordinates found there marked."""
    return await _revision_plot(
        request, database, model_id, revision, png_cache.profile_key, png_cache.draw_profile
    )


async def _revision_plot(
    request: Request,
    database: DatabaseDep,
    model_id: str,
    revision: str,
    key_of: Callable[[ModelRevision], str],
    draw: Callable[[str], bytes],
) -> Response:
    """A figure of one revision: what it shows read within the database timeout, drawn (or taken
    from the figure cache) in a worker thread, sent with its ETag."""
    check_model_id(model_id)
    key = await database.read(
        lambda session: key_of(service.get_revision(session, model_id, revision))
    )
    png = await run_in_threadpool(draw, key)
    return cached_response(request, Entity.of(png, PNG), cache_control=PINNED)


@router.get(
    "/models/{model_id:path}/revisions/{revision}/plots/ablation.png",
    response_class=Response,
    responses=_PNG_RESPONSES,
)
async def get_ablation_plot(
    request: Request,
    database: DatabaseDep,
    model_id: ModelIdPath,
    revision: RevisionPath,
    tensor: Annotated[str, Query(min_length=1, max_length=255)],
    index: Annotated[
        str, Query(pattern=INDEX_PATTERN, max_length=64, description="As stored, e.g. 507,1229")
    ],
) -> Response:
    """One coordinate's ablation evidence: perplexity of the baseline, the weight zeroed, zeroed
    with its super activation restored, and each control; and the stop-word probability of
    each against the baseline's."""
    check_model_id(model_id)
    position = service.parse_index(index)

    def read(session: Session) -> str:
        sw = service.get_coordinate(session, model_id, revision, tensor, position)
        return png_cache.ablation_key(sw, model_id, revision)

    png = await run_in_threadpool(png_cache.draw_ablation, await database.read(read))
    return cached_response(request, Entity.of(png, PNG), cache_control=PINNED)


@router.get(
    "/models/{model_id:path}/revisions/{revision}/plots/quantization.png",
    response_class=Response,
    responses=_PNG_RESPONSES,
)
async def get_quantization_plot(
    request: Request, database: DatabaseDep, model_id: ModelIdPath, revision: RevisionPath
) -> Response:
    """The revision's quantization check: the perplexity of each round-to-nearest setting (bits,
    block size; absmax, clipped, clipped with the super weights kept) against full precision."""
    return await _revision_plot(
        request,
        database,
        model_id,
        revision,
        png_cache.quantization_key,
        png_cache.draw_quantization,
    )


@router.get(
    "/models/{model_id:path}/revisions/{revision}/plots/experts.png",
    response_class=Response,
    responses=_PNG_RESPONSES,
)
async def get_experts_plot(
    request: Request, database: DatabaseDep, model_id: ModelIdPath, revision: RevisionPath
) -> Response:
    """A mixture-of-experts revision: per layer and routed expert, the largest |down-projection
    output| on a log colour scale (experts no token reached in grey), its super experts
    outlined."""
    return await _revision_plot(
        request, database, model_id, revision, png_cache.experts_key, png_cache.draw_experts
    )


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
    coordinates, their states, evidence, provenance and (for detected revisions) the per-layer
    profile; one revision with `?revision=`."""
    model_id = check_model_id(request.path_params["model_id"])
    revision = request.query_params.get("revision")
    if revision is not None:
        service.revision_kind_of(revision)  # InvalidInput (422) unless a well-formed revision

    def build(session: Session) -> Entity:
        return Entity.of(json_bytes(service.lookup_document(session, model_id, revision)), JSON)

    entity = await cached_entity(request, ("model", model_id, revision), build)
    pinned = revision is not None and revision != "unknown"
    return cached_response(request, entity, cache_control=PINNED if pinned else REVALIDATE)


@router.get(
    "/revisions/{revision}",
    response_model=RevisionMatches,
    responses=cached_responses(404, e404="No model revision at this revision"),
)
async def get_revision(request: Request, revision: RevisionPath) -> Response:
    """Every model revision recorded at `revision`, under any model id: how a local directory,
    known only by the content hash of its weight files (`sha256:…`), is found."""

    def build(session: Session) -> Entity:
        return Entity.of(json_bytes(service.revisions_at_document(session, revision)), JSON)

    entity = await cached_entity(request, ("revision", revision), build)
    # Another model id may be recorded at the same revision later: always revalidate.
    return cached_response(request, entity, cache_control=REVALIDATE)
