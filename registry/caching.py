"""HTTP caching for read endpoints: one body built once per change of the data, served with a
strong ETag, Cache-Control, 304 on If-None-Match, and gzip when it is large.

How an endpoint uses it (registry/app.py says the same for new routers):

    entity = await cached_entity(request, ("thing", thing_id), build)   # build(session) -> Entity
    return cached_response(request, entity, cache_control=REVALIDATE)

- `Entity` is one response body with its validators: the ETag is the sha256 of the bytes (so it
  changes exactly when the data does, never with the clock), the gzip form is made once, the
  first time a client asks for it.
- `cached_entity` asks for the registry's data version (registry.data_version: a counter every
  write bumps in its own transaction) and returns the entity built for that version, building
  it (in a worker thread) when the data changed since; the version is read before the data, so
  a body is never older than the version it is filed under. The version comes from a read that
  started at most `api_data_version_max_age_seconds` (0.25 s) before the request
  (`DataVersionReader`): a write shows in every answer within that time, and a busy server reads
  the version a few times a second instead of once per request, so a cache hit costs no database
  work at all.
- `cached_response` answers: 304 when If-None-Match names the representation, the gzip form when
  the client accepts gzip and the body is at least GZIP_MIN_BYTES, the identity form otherwise.

The gzip representation has its own strong ETag (`"<hash>-gzip"`): a strong validator names one
exact byte sequence, and the two forms are different bytes (RFC 9110, 8.8.3). If-None-Match with
either tag answers 304, since both stand for the same data.
"""

import asyncio
import gzip
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from registry.api_errors import errors
from registry.data_version import current_version
from registry.dependencies import Database
from registry.settings import get_settings

# Below this, gzip saves less than the time it costs (a lookup with evidence is ~5-20 KB).
GZIP_MIN_BYTES = 1024
# Level 6 (zlib's default): nearly level 9's size at a fraction of its time; done once per body.
GZIP_LEVEL = 6
# How many bodies a process keeps (a lookup body is a few KB; the index a few hundred KB).
DEFAULT_CACHE_ENTRIES = 512
# The hash prefix that names a body: 128 bits, plenty to tell versions of one resource apart.
ETAG_HEX_CHARS = 32

# Cache-Control policies.
# Data at a pinned revision changes only by a retraction or a reproduction: caches may keep it a
# few minutes, then revalidate (a 304 costs nothing).
PINNED = "public, max-age=300"
# Everything else (all revisions of a model, the model list, the index): always revalidate.
REVALIDATE = "public, no-cache"


@dataclass
class Entity:
    """One response body and its validators."""

    body: bytes
    media_type: str
    etag: str
    last_modified: datetime | None = None
    _gzipped: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, body: bytes, media_type: str, *, last_modified: datetime | None = None) -> "Entity":
        digest = hashlib.sha256(body).hexdigest()[:ETAG_HEX_CHARS]
        return cls(
            body=body, media_type=media_type, etag=f'"{digest}"', last_modified=last_modified
        )

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gzip"'

    @property
    def compressible(self) -> bool:
        return len(self.body) >= GZIP_MIN_BYTES

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzipped is None:
                # mtime=0: the same body always gives the same bytes (and so the same ETag).
                self._gzipped = gzip.compress(self.body, compresslevel=GZIP_LEVEL, mtime=0)
            return self._gzipped


class ResponseCache:
    """The last `max_entries` entities built, by (key, data version); safe across threads."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Hashable, Hashable], Entity] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable) -> Entity | None:
        with self._lock:
            entity = self._entries.get((key, version))
            if entity is not None:
                self._entries.move_to_end((key, version))
            return entity

    def put(self, key: Hashable, version: Hashable, entity: Entity) -> Entity:
        with self._lock:
            self._entries[(key, version)] = entity
            self._entries.move_to_end((key, version))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entity

    def get_or_build(self, key: Hashable, version: Hashable, build: Callable[[], Entity]) -> Entity:
        """The cached entity, or `build()` stored under this version. Two threads that miss at
        once both build (the same bytes); no lock is held while building."""
        return self.get(key, version) or self.put(key, version, build())


def accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().lower()
            return not (quality.startswith("q=") and _zero(quality[2:]))
    return False


def _zero(text: str) -> bool:
    try:
        return float(text) == 0
    except ValueError:
        return False


def etag_matches(if_none_match: str, tags: tuple[str, ...]) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x" (RFC 9110, 13.1.2)."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        candidate = candidate.removeprefix("W/")
        if candidate in tags:
            return True
    return False


def cached_response(request: Request, entity: Entity, *, cache_control: str) -> Response:
    """The response for `entity`: 304, gzip or identity (see the module's docstring)."""
    use_gzip = entity.compressible and accepts_gzip(request)
    etag = entity.gzip_etag if use_gzip else entity.etag
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if entity.compressible:
        headers["Vary"] = "Accept-Encoding"
    if entity.last_modified is not None:
        headers["Last-Modified"] = format_datetime(entity.last_modified, usegmt=True)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match, (entity.etag, entity.gzip_etag)):
        return Response(status_code=304, headers=headers)
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
        return Response(entity.gzipped(), media_type=entity.media_type, headers=headers)
    return Response(entity.body, media_type=entity.media_type, headers=headers)


class DataVersionReader:
    """The data version for a request, from a read that started at most `max_age` seconds
    before the request arrived (settings.api_data_version_max_age_seconds).

    A busy server thus reads the version a few times a second, whatever its request rate, and
    a write committed more than `max_age` before a request is always in its answer (0: every
    request waits for a read that started after it arrived). Concurrent requests share one read.
    Reads go through Database.call, so an unavailable database gives 503 within the database
    timeout; a read that hangs is not waited for past it.
    """

    def __init__(self, database: Database, max_age: float):
        self.database = database
        self.max_age = max_age
        self._known: int | None = None
        self._known_at = -math.inf  # when the read that gave `_known` started (monotonic)
        self._read: asyncio.Future[int] | None = None
        self._read_started = -math.inf

    async def current(self) -> int:
        now = time.monotonic()
        if self._known is not None and now - self._known_at <= self.max_age:
            return self._known
        read = self._read
        # A read under way that started recently enough is shared; a finished one was either
        # a success (handled above while fresh) or a failure, which is not repeated to later
        # requests: each asks the database again, so recovery shows at once.
        if read is None or read.done() or now - self._read_started > self.max_age:
            read = self._read = asyncio.ensure_future(self._fetch(now))
            self._read_started = now
            read.add_done_callback(_retrieve)
        # shield: a request that goes away must not cancel the read the others wait for.
        return await asyncio.shield(read)

    async def _fetch(self, started: float) -> int:
        version = await self.database.call(self._read_version)
        if started >= self._known_at:
            self._known, self._known_at = version, started
        return version

    def _read_version(self) -> int:
        with self.database.engine.connect() as connection:
            return current_version(connection)


def _retrieve(future: asyncio.Future) -> None:
    # A failed read whose requests went away must not be reported as "never retrieved".
    if not future.cancelled():
        future.exception()


def install(app_state: Any, database: Database) -> None:
    """Give an application its response cache and data-version reader (create_app does)."""
    app_state.response_cache = ResponseCache()
    app_state.data_versions = DataVersionReader(
        database, get_settings().api_data_version_max_age_seconds
    )


async def cached_entity(
    request: Request, key: Hashable, build: Callable[[Session], Entity]
) -> Entity:
    """The entity for `key` at the current data version, built by `build(session)` (in a
    worker thread, within the database timeout) when the cache does not have it yet."""
    state = request.app.state
    cache: ResponseCache = state.response_cache
    version = await state.data_versions.current()
    entity = cache.get(key, version)
    if entity is None:
        entity = await state.database.call(_build, state.database, cache, key, build)
    return entity


def _build(
    database: Database, cache: ResponseCache, key: Hashable, build: Callable[[Session], Entity]
) -> Entity:
    # The version first, then the data: a body is never older than the version it is filed
    # under (a write committed in between only makes it newer, and the next version rebuilds it).
    with database.engine.connect() as connection, Session(bind=connection) as session:
        version = current_version(connection)
        return cache.get_or_build(key, version, lambda: build(session))


def cached_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a route answered by `cached_response`: 304 and the given error
    statuses (see registry.api_errors.errors)."""
    return {
        304: {"description": "Not modified: the If-None-Match ETag is current"},
        **errors(*statuses, **descriptions),
    }
