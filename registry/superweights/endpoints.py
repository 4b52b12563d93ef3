"""Read endpoints: list models, look up the coordinates of one model (and revision)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from registry.dependencies import SessionDep
from registry.superweights import service
from registry.superweights.schemas import (
    REVISION_PATTERN,
    ModelLookup,
    ModelPage,
    RevisionMatches,
)

router = APIRouter(tags=["super weights"])

_ERRORS = {404: {"description": "Unknown model or revision"}}


@router.get("/models", response_model=ModelPage)
def list_models(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    """Model ids in the registry (sorted), with their revisions and coordinate counts."""
    total, items = service.list_models(session, limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


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
    coordinates, their states, evidence and provenance."""
    return service.lookup_document(session, model_id, revision)


@router.get(
    "/revisions/{revision}",
    response_model=RevisionMatches,
    responses={404: {"description": "No model revision at this revision"}},
)
def get_revision(
    session: SessionDep,
    revision: Annotated[
        str,
        Path(
            pattern=REVISION_PATTERN,
            description="A full 40-hex commit sha, sha256:<64 hex> or unknown",
        ),
    ],
) -> dict:
    """Every model revision recorded at `revision`, under any model id: how a local directory,
    known only by the content hash of its weight files (`sha256:…`), is found."""
    return service.revisions_at_document(session, revision)
