"""Errors that reach a user as one line (CLI: stderr + exit code; HTTP: a JSON body)."""


class SwregError(Exception):
    """Base of every error swreg reports to a user instead of a traceback."""

    exit_code = 1
    http_status = 400


class NotFound(SwregError):
    http_status = 404


class InvalidInput(SwregError):
    http_status = 422


class Conflict(SwregError):
    http_status = 409


class DatabaseOutOfDate(SwregError):
    http_status = 503


class DatabaseUnavailable(SwregError):
    http_status = 503
