"""`WriteTokenDep`: the FastAPI dependency every write endpoint takes, and `TokenFirstRoute`,
the route class that checks the token before FastAPI reads the request body."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.auth.models import ApiToken
from registry.auth.service import Unauthorized, authenticate
from registry.dependencies import Database

# auto_error=False: a missing header becomes our own 401 JSON error, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `swreg token create NAME`, as `Authorization: Bearer <token>`",
)

MISSING_TOKEN = (
    "this endpoint needs an API token: send `Authorization: Bearer <token>` "
    "(create one with `swreg token create NAME`)"
)
# Where TokenFirstRoute leaves the token it checked, for the dependency to hand on.
_STATE_KEY = "swreg_api_token"


async def _check(request: Request) -> ApiToken:
    credentials = await _bearer(request)
    if credentials is None or not credentials.credentials:
        raise Unauthorized(MISSING_TOKEN)
    database: Database = request.app.state.database
    # authenticate() also records last_used_at: a write.
    return await database.write(lambda session: authenticate(session, credentials.credentials))


async def has_token(request: Request) -> bool:
    """Whether a read carries a valid token (it then sees what only token holders see); a
    missing or invalid one is no error on an open endpoint."""
    if not request.headers.get("authorization"):
        return False
    try:
        await _check(request)
    except Unauthorized:
        return False
    return True


async def require_token(
    request: Request,
    # Declared for the OpenAPI document (the bearer security scheme); read by _check.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    token = getattr(request.state, _STATE_KEY, None)
    return token if token is not None else await _check(request)


WriteTokenDep = Annotated[ApiToken, Depends(require_token)]


class TokenFirstRoute(APIRoute):
    """A route that checks the API token before anything else, the request body included:
    FastAPI reads a declared body before it solves dependencies, so without this an upload
    without a token would be read (up to the body limit) before its 401."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def token_first(request: Request) -> Response:
            setattr(request.state, _STATE_KEY, await _check(request))
            return await handler(request)

        return token_first
