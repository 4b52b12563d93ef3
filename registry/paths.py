"""Where things are served: the API under API_PREFIX, the web pages at the root."""

API_PREFIX = "/api/v1"
