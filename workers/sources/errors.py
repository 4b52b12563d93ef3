"""Why the Hub (or its cache) cannot give us a model."""

from workers.contract.errors import EXIT_FAILURE, InvalidInput, NotFound, Unavailable


class HubRefused(InvalidInput):
    """The Hub (or its cache) refuses this model: refused at submission or at fetch."""

    permanent = True
    # The name was well formed (checked before the Hub is asked); the Hub would not give the
    # model (gated, disabled, offline and not cached): the command failed, it was not misused.
    exit_code = EXIT_FAILURE


class HubNotFound(NotFound):
    permanent = True


class HubUnavailable(Unavailable):
    """The Hub could not be reached and the cache cannot stand in: worth retrying later."""
