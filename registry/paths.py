"""Where things are served: the API under API_PREFIX, the web pages at the root; and the largest
page of a listing it serves. Imports nothing, so the light client (`swreg.client`) reads them
too."""

API_PREFIX = "/api/v1"
# Items per page of the API's listings (models, jobs), at most.
MAX_PAGE = 500
