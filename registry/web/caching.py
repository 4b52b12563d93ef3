"""Cacheable responses: a strong ETag (a hash of the exact bytes) and Cache-Control, and 304 Not
Modified when the client already holds those bytes (If-None-Match).

Kept small and on its own: the plots use it; a registry-wide HTTP caching layer can replace it.
"""

import hashlib

from fastapi import Request, Response

# Plots are redrawn when a revision is recorded again, so a client revalidates them after this
# long; the ETag makes that revalidation a bodiless 304 when nothing changed.
PLOT_MAX_AGE_SECONDS = 300


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    # A list of tags; a weak tag ("W/...") matches when its opaque part does (RFC 9110 13.1.2).
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in tags


def cached_response(
    request: Request, body: bytes, media_type: str, *, max_age: int = PLOT_MAX_AGE_SECONDS
) -> Response:
    """`body` with its ETag and Cache-Control, or 304 when the client's copy is current."""
    etag = strong_etag(body)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
