"""`WriteTokenDep`: the FastAPI dependency every write endpoint takes."""

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.auth.models import ApiToken
from registry.auth.service import Unauthorized, authenticate
from registry.dependencies import SessionDep

# auto_error=False: a missing header becomes our own 401 JSON error, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `swreg token create NAME`, as `Authorization: Bearer <token>`",
)

MISSING_TOKEN = (
    "this endpoint needs an API token: send `Authorization: Bearer <token>` "
    "(create one with `swreg token create NAME`)"
)


def require_token(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if credentials is None or not credentials.credentials:
        raise Unauthorized(MISSING_TOKEN)
    token = authenticate(session, credentials.credentials)
    session.commit()  # last_used_at
    return token


WriteTokenDep = Annotated[ApiToken, Depends(require_token)]
