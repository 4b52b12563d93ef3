"""Bounds on the integers a request may carry: what the database's columns hold.

Ids are 32-bit integer columns on every backend; an offset beyond the largest id can only give
an empty page, and bounding it keeps SQLite (64-bit) and PostgreSQL (bigint) from overflowing.
"""

from typing import Annotated

from fastapi import Path, Query

from registry.paths import MAX_PAGE

MAX_INT32 = 2**31 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT32, description="Items to skip")]
# Lists page by key (`after`, the `next` of the previous page); `offset` still works for the API's
# first major version (docs/compatibility.md) and is marked deprecated in the OpenAPI document.
DeprecatedOffset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_INT32,
        deprecated=True,
        description="Items to skip. Deprecated: page with `after` (the `next` of the previous "
        "page), which stays fast deep in the list; `offset` is kept until API v2.",
    ),
]
RowId = Annotated[int, Path(ge=1, le=MAX_INT32)]
JobCursor = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_INT32,
        description="The `next` of the previous page (a job id): the jobs older than it",
    ),
]
