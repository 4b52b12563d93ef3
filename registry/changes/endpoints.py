"""GET /api/v1/changes: the model revisions added, updated or retracted since a cursor, a page
at a time, read from one snapshot (registry.changes.service)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from registry.api_errors import errors
from registry.changes import service
from registry.changes.schemas import ChangesPage
from registry.index.stream import Snapshot
from registry.superweights.endpoints import json_bytes

router = APIRouter(tags=["changes"])

Since = Annotated[
    str,
    Query(
        max_length=40,
        pattern=service.CURSOR_PATTERN,
        description="A data version (0: everything) or the `next` of the previous page",
        examples=["0", "1234", "1234.56"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT, description="Revisions per page")]


@router.get(
    "/changes",
    response_class=Response,
    responses={200: {"model": ChangesPage, "description": "One page of the feed"}, **errors(422)},
)
async def get_changes(
    request: Request, since: Since = "0", limit: Limit = service.DEFAULT_LIMIT
) -> Response:
    """What changed since a data version: each revision added, updated or retracted, as it is
    now, keyset-paginated. A mirror starts at 0, follows `next` while `has_more`, and later
    polls with the last `next`."""
    cursor = service.Cursor.parse(since)
    database = request.app.state.database

    def read() -> bytes:
        snapshot = Snapshot.open(database.engine)
        try:
            page = service.changes_page(snapshot.session, cursor, snapshot.version, limit)
        finally:
            snapshot.close()
        # Serialized here, in the worker thread: a page of revisions with profiles is MBs.
        return json_bytes(page)

    body = await database.call(read)
    # Never cached by others: the same cursor gives more as the registry changes.
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})
