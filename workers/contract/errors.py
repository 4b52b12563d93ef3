"""Errors that reach a user as one line (CLI: stderr and an exit code; HTTP: a JSON body).

Each kind says how a caller should react: `http_status` for the API, `exit_code` for the command
line, and `permanent` for the worker (a permanent failure is not retried).

The command line's exit codes, one convention for every command (README, "Exit codes"):
0 done; EXIT_FAILURE when the request was well formed and could not be carried out (not found,
unavailable, conflict, an out-of-date database); EXIT_USAGE when the request itself is wrong and
asking again unchanged gives the same answer (click's usage errors use the same code; swreg's
`InvalidInput` and a refused checkpoint: HTTP's 422); `swreg submit --wait` adds its own code
for a job that failed.
"""

EXIT_FAILURE = 1
EXIT_USAGE = 2  # what click exits with on a usage error


class SwregError(Exception):
    """Base of every error swreg reports to a user instead of a traceback."""

    exit_code = EXIT_FAILURE
    http_status = 400
    permanent = False


class InvalidInput(SwregError):
    """The request itself is wrong: asking again unchanged gives the same answer."""

    exit_code = EXIT_USAGE
    http_status = 422


class NotFound(SwregError):
    http_status = 404


class Conflict(SwregError):
    http_status = 409


class Unavailable(SwregError):
    """Something swreg depends on (the database, the Hub) cannot be reached: worth retrying."""

    http_status = 503


# Their public names: these are the exceptions `import swreg` exports, so a user's traceback
# reads `swreg.NotFound`, not this internal module's path (pickling resolves the name too).
for _kind in (SwregError, InvalidInput, NotFound, Conflict, Unavailable):
    _kind.__module__ = "swreg"
del _kind
