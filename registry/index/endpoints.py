"""The whole registry as one JSON index document (the same bytes `swreg export` writes)."""

from fastapi import APIRouter, Response

from registry.dependencies import SessionDep
from registry.index import service
from workers.contract.resources import INDEX_SCHEMA_PATH

router = APIRouter(tags=["index"])

_INDEX_DOC = {
    200: {
        "description": "The JSON index; its JSON Schema is served at /api/v1/index/schema.",
        "content": {"application/json": {}},
    }
}


@router.get("/index", response_class=Response, responses=_INDEX_DOC)
def get_index(session: SessionDep) -> Response:
    """Every model revision and coordinate, in the JSON index format."""
    return Response(service.dumps(service.export_document(session)), media_type="application/json")


@router.get(
    "/index/schema", response_class=Response, responses={200: {"content": {"application/json": {}}}}
)
def get_index_schema() -> Response:
    """The JSON Schema (draft 2020-12) of the index."""
    return Response(INDEX_SCHEMA_PATH.read_bytes(), media_type="application/schema+json")
