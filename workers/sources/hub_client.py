"""Every Hub call bounded: huggingface_hub's HTTP client with connect and read timeouts.

huggingface_hub's own client runs with `timeout=None`, and several of its calls pass
`timeout=None` explicitly (model_info, repo_info), which overrides any client default. So the
bound is kept one level lower, in the client's transport, which sees every request:

- each request's timeouts are clamped to (connect, read) whatever the caller asked for;
- a read that waits longer than `read` seconds for the next bytes (a Hub that accepts the
  connection and never answers, or stalls in the middle of a file) raises `HubStalled`, which
  huggingface_hub does not retry (it retries its own timeout errors up to five times, each
  waiting the whole timeout again), so a stall ends after `read` seconds, not six times that.

`HubStalled` is an httpx TransportError: every caller that already treats an unreachable Hub as
one (pinning, fetching) treats a stalled one the same way.

`configure(...)` installs the bounds (the registry and the worker call it with their settings);
`ensure_configured()` installs the defaults on first use when nobody configured anything.
"""

import math
import threading
from dataclasses import dataclass

import httpx2  # huggingface_hub's HTTP client

# Short defaults: a Hub call that has sent nothing for this long is not coming back soon.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_READ_TIMEOUT_SECONDS = 10.0


class HubStalled(httpx2.TransportError):
    """The Hub sent no bytes for the read timeout (not retried by huggingface_hub)."""


@dataclass(frozen=True)
class HubTimeouts:
    connect: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    # No bytes for this long, at any point of a request (headers or body): the Hub stalled.
    read: float = DEFAULT_READ_TIMEOUT_SECONDS

    def clamp(self, asked: dict | None) -> dict:
        asked = asked or {}

        def bounded(key: str, limit: float) -> float:
            value = asked.get(key)
            return limit if value is None else min(value, limit)

        return {
            "connect": bounded("connect", self.connect),
            "read": bounded("read", self.read),
            "write": bounded("write", self.read),
            "pool": bounded("pool", self.connect),
        }


_STALLS = (httpx2.ReadTimeout, httpx2.WriteTimeout, httpx2.PoolTimeout)


def _stalled(timeouts: HubTimeouts, url: object) -> HubStalled:
    return HubStalled(f"the Hub sent nothing for {timeouts.read:g} s ({url})")


class _GuardedStream(httpx2.SyncByteStream):
    def __init__(self, inner, timeouts: HubTimeouts, url: object):
        self.inner, self.timeouts, self.url = inner, timeouts, url

    def __iter__(self):
        try:
            yield from self.inner
        except _STALLS:
            raise _stalled(self.timeouts, self.url) from None

    def close(self) -> None:
        self.inner.close()


class BoundedTransport(httpx2.BaseTransport):
    """An HTTP transport whose every request is bounded by `timeouts` (see the module doc)."""

    def __init__(self, timeouts: HubTimeouts, inner: httpx2.BaseTransport | None = None):
        self.timeouts = timeouts
        self.inner = inner or httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.extensions["timeout"] = self.timeouts.clamp(request.extensions.get("timeout"))
        try:
            response = self.inner.handle_request(request)
        except _STALLS:
            raise _stalled(self.timeouts, request.url) from None
        response.stream = _GuardedStream(response.stream, self.timeouts, request.url)
        return response

    def close(self) -> None:
        self.inner.close()


_lock = threading.Lock()
_installed: HubTimeouts | None = None


def configure(timeouts: HubTimeouts) -> None:
    """Make huggingface_hub's shared client bounded by `timeouts` (idempotent)."""
    global _installed
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    with _lock:
        if _installed == timeouts:
            return

        def factory() -> httpx2.Client:
            # huggingface_hub's default client (its request hook names each request), bounded.
            return httpx2.Client(
                event_hooks={"request": [_http.hf_request_event_hook]},
                follow_redirects=True,
                timeout=httpx2.Timeout(timeouts.read, connect=timeouts.connect),
                transport=BoundedTransport(timeouts),
            )

        _http.set_client_factory(factory)
        # The timeouts huggingface_hub passes for downloads and metadata requests (read at
        # call time; whole seconds): the transport clamps them to the exact bounds anyway.
        constants.HF_HUB_DOWNLOAD_TIMEOUT = math.ceil(timeouts.read)
        constants.HF_HUB_ETAG_TIMEOUT = math.ceil(timeouts.read)
        _installed = timeouts


def ensure_configured() -> None:
    """The default bounds, unless the registry or the worker configured their own."""
    if _installed is None:
        configure(HubTimeouts())


def current() -> HubTimeouts:
    ensure_configured()
    assert _installed is not None
    return _installed
