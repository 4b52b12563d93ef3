"""Errors of the science core that a user sees as one line."""

from workers.contract.errors import EXIT_USAGE, SwregError


class CheckpointRefused(SwregError):
    """The checkpoint cannot be analysed, and trying again will not change that."""

    permanent = True
    exit_code = EXIT_USAGE
    http_status = 422


class UnsupportedArchitecture(CheckpointRefused):
    pass
