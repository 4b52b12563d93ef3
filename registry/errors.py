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
    "InvalidInput",
    "NotFound",
    "SwregError",
    "Unavailable",
]


class DatabaseOutOfDate(SwregError):
    http_status = 503


class DatabaseUnavailable(Unavailable):
    pass
