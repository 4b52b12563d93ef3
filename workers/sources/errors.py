"""Why the Hub (or its cache) cannot give us a model."""

from workers.contract.errors import InvalidInput, NotFound, Unavailable


class HubRefused(InvalidInput):
    """The Hub (or its cache) refuses this model: refused at submission or at fetch."""

    permanent = True


class HubNotFound(NotFound):
    permanent = True


class HubUnavailable(Unavailable):
    """The Hub could not be reached and the cache cannot stand in: worth retrying later."""
