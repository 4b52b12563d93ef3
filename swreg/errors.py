"""The errors the Python API raises. They are swreg's error kinds (`SwregError` and its
`NotFound`, `InvalidInput`, `Unavailable`), so one `except` serves an index file and the HTTP
API alike; an answer from the API also carries its HTTP status and error code."""

from workers.contract.errors import Conflict, InvalidInput, NotFound, SwregError, Unavailable

__all__ = [
    "ApiError",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "SwregError",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class ApiError(SwregError):
    """The HTTP API answered with an error (`status_code`, `code` as in its JSON body)."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class ApiNotFound(ApiError, NotFound):
    pass


class ApiInvalidInput(ApiError, InvalidInput):
    pass


class Unauthorized(ApiError):
    """A write without a valid token."""


class ApiConflict(ApiError, Conflict):
    pass


class ApiUnavailable(ApiError, Unavailable):
    """The API cannot be reached, or it (or its database) is failing: worth retrying."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: ApiNotFound,
    409: ApiConflict,
    422: ApiInvalidInput,
}


def error_for(status_code: int, code: str | None, message: str) -> ApiError:
    kind = _BY_STATUS.get(status_code) or (ApiUnavailable if status_code >= 500 else ApiError)
    return kind(message, status_code=status_code, code=code)


# Public names in tracebacks (`swreg.Unauthorized`), as for the contract's kinds; the API's
# variants of NotFound and the others keep this public module's name.
ApiError.__module__ = Unauthorized.__module__ = "swreg"
