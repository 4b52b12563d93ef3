"""Errors that reach a user as one line. The kinds are the contract's (shared with the workers);
the registry adds those of its own database."""

from workers.contract.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SwregError,
    Unavailable,
)

__all__ = [
    "Conflict",
    "DatabaseOutOfDate",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "SwregError",
    "Unavailable",
]


class Forbidden(SwregError):
    """The token is valid but may not do this."""

    http_status = 403


class DatabaseOutOfDate(SwregError):
    http_status = 503


class DatabaseUnavailable(Unavailable):
    """The database is down, unreachable, locked or too slow. Its message (for the command line
    and the logs) may name the database; an HTTP body says only `public_message`, so that no URL,
    host or credential reaches a client."""

    public_message = "the database is unavailable; retry later"


# Reasons are shown on one line in the CLI and the API (a job's last error); a traceback belongs
# in the worker's log.
MAX_ERROR_CHARS = 500


def one_line(error: BaseException | str) -> str:
    """An error as one short line: SwregErrors by their message, others prefixed by their type."""
    if isinstance(error, BaseException):
        message = str(error) or type(error).__name__
        if not isinstance(error, SwregError):
            message = f"{type(error).__name__}: {message}"
    else:
        message = error
    line = " ".join(message.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"
