"""`GET /api/v1/index` in constant memory: the index streamed from one database snapshot, its
strong ETag and Last-Modified known before the first byte, its bodies kept on disk.

- The ETag is derived from the data state, not from the body: `index_tag(epoch, version)` names
  the database (its random epoch), its data version (bumped by every write, in the write's
  transaction) and the code version (which fixes how data becomes bytes). The body is read in
  a snapshot that sees exactly that version (registry.index.stream.Snapshot), so one tag always
  names one byte sequence. The gzip form has its own tag (`"<tag>-gzip"`), as in
  registry.caching.
- If-None-Match with a current tag answers 304 from the data version alone.
- The first request for a data state streams the body (gzip compressed on the fly when the
  client accepts it) and writes it to disk as it goes (registry.index.files); later requests for
  the same state and encoding read that file. Nothing holds a whole body in memory.
"""

import hashlib
import zlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from registry import __version__
from registry.caching import ETAG_HEX_CHARS, GZIP_LEVEL, REVALIDATE, accepts_gzip, etag_matches
from registry.data_version import current_epoch
from registry.index.files import IndexFiles
from registry.index.stream import Snapshot
from registry.settings import get_settings

MEDIA_TYPE = "application/json"
# zlib's window bits for a gzip wrapper (16 + 15): header with mtime 0, so bytes are stable.
GZIP_WBITS = 31
# How much of a cached file one read hands to the server.
FILE_CHUNK_BYTES = 1024 * 1024
# Data states whose Last-Modified a process remembers (one per write; only the newest matter).
KNOWN_STATES = 64


def index_tag(epoch: str, version: int) -> str:
    digest = hashlib.sha256(f"index:{epoch}:{version}:{__version__}".encode()).hexdigest()
    return digest[:ETAG_HEX_CHARS]


def _etags(tag: str) -> tuple[str, str]:
    return f'"{tag}"', f'"{tag}-gzip"'


def gzip_chunks(chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
    """One gzip member of all `chunks`, compressed as they come (same input, same bytes)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _encoded(text: Iterator[str]) -> Generator[bytes, None, None]:
    for piece in text:
        yield piece.encode("utf-8")


def _file_chunks(path: Path) -> tuple[int, Generator[bytes, None, None]] | None:
    """The file's size and its bytes; opened now, so that a later removal (a newer state
    tidying up) does not cut the answer short. None when it is gone already."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the generator)
    except FileNotFoundError:
        return None
    size = path.stat().st_size

    def chunks() -> Generator[bytes, None, None]:
        with handle:
            while chunk := handle.read(FILE_CHUNK_BYTES):
                yield chunk

    return size, chunks()


async def _in_threads(chunks: Iterator[bytes], close: Callable[[], None]) -> AsyncIterator[bytes]:
    """A blocking iterator served from worker threads; `close` always runs at the end, also
    when the client goes away."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close)


def _headers(tag: str, use_gzip: bool, last_modified: datetime | None) -> dict[str, str]:
    identity, gzipped = _etags(tag)
    headers = {
        "ETag": gzipped if use_gzip else identity,
        "Cache-Control": REVALIDATE,
        "Vary": "Accept-Encoding",
    }
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)
    return headers


def _known_states(state) -> dict[str, datetime]:
    if not hasattr(state, "index_states"):
        state.index_states = {}
    return state.index_states


def _remember(state, tag: str, last_modified: datetime) -> None:
    known = _known_states(state)
    known[tag] = last_modified
    while len(known) > KNOWN_STATES:
        known.pop(next(iter(known)))


async def _epoch(state) -> str:
    # Set once when the database is made: read once per process.
    if getattr(state, "index_epoch", None) is None:
        state.index_epoch = await state.database.read(current_epoch)
    return state.index_epoch


async def stream_index(request: Request) -> Response:
    state = request.app.state
    files = IndexFiles(get_settings().index_cache_dir)
    use_gzip = accepts_gzip(request)
    encoding = "gzip" if use_gzip else "identity"
    if_none_match = request.headers.get("if-none-match")

    # The fast paths: the data version (read a few times a second at most) names the state.
    version = await state.data_versions.current()
    tag = index_tag(await _epoch(state), version)
    last_modified = _known_states(state).get(tag)
    if if_none_match and etag_matches(if_none_match, _etags(tag)):
        return Response(status_code=304, headers=_headers(tag, use_gzip, last_modified))
    if last_modified is not None and (path := files.existing(tag, encoding)):
        opened = await anyio.to_thread.run_sync(_file_chunks, path)
        if opened is not None:
            return _file_response(opened, _headers(tag, use_gzip, last_modified))

    # Otherwise one snapshot: its version names the body read from it.
    snapshot = await state.database.call(_open_dated, state.database.engine)
    tag = index_tag(snapshot.epoch, snapshot.version)
    _remember(state, tag, snapshot.generated_at)
    headers = _headers(tag, use_gzip, snapshot.generated_at)
    if if_none_match and etag_matches(if_none_match, _etags(tag)):
        await anyio.to_thread.run_sync(snapshot.close)
        return Response(status_code=304, headers=headers)
    if path := files.existing(tag, encoding):
        opened = await anyio.to_thread.run_sync(_file_chunks, path)
        if opened is not None:
            await anyio.to_thread.run_sync(snapshot.close)
            return _file_response(opened, headers)
    body = _encoded(snapshot.chunks())
    if use_gzip:
        body = gzip_chunks(body)
        headers["Content-Encoding"] = "gzip"
    body = files.tee(body, tag, encoding)

    def close() -> None:
        body.close()
        snapshot.close()

    return StreamingResponse(_in_threads(body, close), media_type=MEDIA_TYPE, headers=headers)


def _open_dated(engine) -> Snapshot:
    snapshot = Snapshot.open(engine)
    try:
        snapshot.generated_at  # noqa: B018 (read now, in this worker thread)
    except BaseException:
        snapshot.close()
        raise
    return snapshot


def _file_response(
    opened: tuple[int, Generator[bytes, None, None]], headers: dict[str, str]
) -> Response:
    size, chunks = opened
    headers = {**headers, "Content-Length": str(size)}
    if headers["ETag"].endswith('-gzip"'):
        headers["Content-Encoding"] = "gzip"
    return StreamingResponse(
        _in_threads(chunks, chunks.close), media_type=MEDIA_TYPE, headers=headers
    )
