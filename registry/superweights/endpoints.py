"""Read endpoints: list models, look up the coordinates of one model (and revision), a revision's
per-layer profile, and the plots of a revision and of a coordinate.

The routes under /models/{model_id}/revisions/... come before the lookup's /models/{model_id}:
a model id holds a slash, so the lookup's path pattern would take them too.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from registry.dependencies import SessionDep
from registry.errors import NotFound
from registry.superweights import service
from registry.superweights.schemas import REVISION_PATTERN, ModelLookup, ModelPage, ProfileOut
from registry.web import figures
from registry.web.caching import cached_response

router = APIRouter(tags=["super weights"])

_ERRORS = {404: {"description": "Unknown model or revision"}}
_PNG = {
    200: {"content": {"image/png": {}}, "description": "A PNG image (strong ETag)"},
    304: {"description": "Not modified (If-None-Match)"},
    404: {"description": "Unknown model, revision or coordinate, or nothing to draw"},
}
RevisionPath = Annotated[
    str,
    Path(pattern=REVISION_PATTERN, description="A full 40-hex commit sha or sha256:<64 hex>"),
]


@router.get("/models", response_model=ModelPage)
def list_models(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    q: Annotated[
        str | None, Query(max_length=255, description="Only model ids containing this text")
    ] = None,
) -> dict:
    """Model ids in the registry (sorted), with their revisions and coordinate counts."""
    total, items = service.list_models(session, limit=limit, offset=offset, search=q)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get(
    "/models/{model_id:path}/revisions/{revision}/profile",
    response_model=ProfileOut,
    responses=_ERRORS,
)
def get_profile(session: SessionDep, model_id: str, revision: RevisionPath) -> dict:
    """The per-layer profile of the detection run that recorded this revision: for every
    layer's down projection, the largest |input| and |output| with their channel and token, the
    spike ratio and |output| percentiles, for the first prompt and for each prompt."""
    rev = service.get_revision(session, model_id, revision)
    if not rev.profile:
        raise NotFound(f"no per-layer profile for {model_id} at {revision}")
    return rev.profile


@router.get(
    "/models/{model_id:path}/revisions/{revision}/plots/profile.png",
    response_class=Response,
    responses=_PNG,
)
def get_profile_plot(
    request: Request, session: SessionDep, model_id: str, revision: RevisionPath
) -> Response:
    """Per layer, the largest |down_proj input| and |output| on a log scale, one line per
    prompt, with the super activations and the coordinates found there marked."""
    rev = service.get_revision(session, model_id, revision)
    return cached_response(request, figures.profile_png(rev), "image/png")


@router.get(
    "/models/{model_id:path}/revisions/{revision}/plots/ablation.png",
    response_class=Response,
    responses=_PNG,
)
def get_ablation_plot(
    request: Request,
    session: SessionDep,
    model_id: str,
    revision: RevisionPath,
    tensor: Annotated[str, Query(min_length=1, max_length=255)],
    index: Annotated[str, Query(min_length=1, max_length=64, description="e.g. 507,1229")],
) -> Response:
    """One coordinate's ablation evidence: perplexity of the baseline, the weight zeroed, zeroed
    with its super activation restored, and each control; and the stop-word probability of
    each against the baseline's."""
    sw = service.get_coordinate(session, model_id, revision, tensor, service.parse_index(index))
    return cached_response(request, figures.ablation_png(sw, model_id, revision), "image/png")


@router.get("/models/{model_id:path}", response_model=ModelLookup, responses=_ERRORS)
def get_model(
    session: SessionDep,
    model_id: str,
    revision: Annotated[
        str | None,
        Query(
            pattern=REVISION_PATTERN,
            description="A full 40-hex commit sha, sha256:<64 hex> or unknown",
        ),
    ] = None,
) -> dict:
    """Every revision of a model (e.g. `huggyllama/llama-7b`) with its super-weight
    coordinates, their states, evidence, provenance and (for detected revisions) the per-layer
    profile."""
    return service.lookup_document(session, model_id, revision)
