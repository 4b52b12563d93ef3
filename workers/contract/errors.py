"""Errors that reach a user as one line (CLI: stderr and an exit code; HTTP: a JSON body).

Each kind says how a caller should react: `http_status` for the API, `exit_code` for the command
line, and `permanent` for the worker (a permanent failure is not retried).
"""


class SwregError(Exception):
    """Base of every error swreg reports to a user instead of a traceback."""

    exit_code = 1
    http_status = 400
    permanent = False


class InvalidInput(SwregError):
    """The request itself is wrong: asking again unchanged gives the same answer."""

    http_status = 422


class NotFound(SwregError):
    http_status = 404


class Conflict(SwregError):
    http_status = 409


class Unavailable(SwregError):
    """Something swreg depends on (the database, the Hub) cannot be reached: worth retrying."""

    http_status = 503
