"""The API's error body {"error": {"code", "message"}} and how routes document it in OpenAPI."""

import re
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from registry.errors import SwregError
from registry.settings import get_settings


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


_DESCRIPTIONS = {
    400: "The body cannot be read as JSON text (not UTF-8)",
    401: "No or invalid API token",
    404: "Not found",
    403: "The token may not do this",
    413: "Request body too large (nothing past the limit is read)",
    422: "Invalid input (path, query or body)",
    429: "A limit of the token is reached: retry after Retry-After seconds",
    503: "The database (or the Hub) is unavailable: retry after Retry-After seconds",
}


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses: the JSON error body, with a description
    (`errors(404, e404="No such job")` replaces the default one)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": descriptions.get(f"e{status}", _DESCRIPTIONS[status]),
        }
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before asking again",
                    "schema": {"type": "integer"},
                }
            }
        responses[status] = entry
    return responses


# On every route: invalid input (FastAPI's validation) and an unavailable database.
COMMON_ERRORS = errors(422, 503)


def error_code(exc: SwregError) -> str:
    # NotFound -> not_found, DatabaseOutOfDate -> database_out_of_date
    return getattr(exc, "code", None) or re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error; a 503 carries Retry-After."""
    response = JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message}}
    )
    if status == 503:
        response.headers["Retry-After"] = str(get_settings().retry_after_seconds)
    response.headers.update(headers or {})
    return response
