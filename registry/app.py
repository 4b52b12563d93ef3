"""The HTTP API: `create_app()` builds the FastAPI application (routers under /api/v1).

To add a router: put it in `_routers()` below; it is mounted under API_PREFIX and its errors
(any SwregError) become JSON bodies {"error": {"code", "message"}} with the error's HTTP status.

What every endpoint gets, and what a new one must keep:

- **Database work** goes through `Database.call/read/write` (registry.dependencies): a worker
  thread, bounded by `api_database_timeout_seconds`; a database that is down, locked, frozen or
  too slow gives 503 with `Retry-After` and a body that names no URL, host or credential. The
  schema check is retried on every request until it has once succeeded, so a server started
  while the database is down answers 503 until it is back, without a restart.
- **Errors**: every status an endpoint can give is listed in its `responses` (the OpenAPI
  document is the contract; tests/registry/test_openapi_fuzz.py holds the app to it).
  `COMMON_ERRORS` (422, 503) is on every route; add `registry.api_errors.errors(...)` for the
  others (401, 404, 413, ...).
- **Bounded input**: request bodies are capped at MAX_BODY_BYTES (registry.middleware: 413,
  nothing more is read); a write route uses `TokenFirstRoute` (registry.auth.dependency), which
  checks the token before the body is read; path and query integers are bounded to what the
  columns hold (registry.bounds); model ids and revisions are validated
  (workers.sources.pinning.check_model_id / check_revision) before they reach the database.
- **HEAD** works on every GET (registry.middleware.HeadAsGet).
- **HTTP caching** (registry.caching: Entity, cached_entity, cached_response, cached_responses,
  and the Cache-Control policies PINNED and REVALIDATE): a read endpoint whose answer is a
  function of the stored data builds its body once per data version and answers with a strong
  ETag, Cache-Control, 304 on If-None-Match and gzip when large:

      @router.get("/things/{thing_id}", responses=cached_responses(404))
      async def get_thing(request: Request, thing_id: RowId) -> Response:
          def build(session: Session) -> Entity:           # runs in a worker thread
              return Entity.of(render(session, thing_id), "text/html; charset=utf-8")

          entity = await cached_entity(request, ("thing", thing_id), build)
          return cached_response(request, entity, cache_control=REVALIDATE)

  `cached_responses(...)` documents 304 (and the error statuses named). Bodies of any media
  type work (JSON, HTML, PNG). A cache hit costs no database work of its own: the data version
  is read once per batch of concurrent requests. A table whose rows such a body shows must be
  tracked (`registry.data_version.track(Model)`) so that writing it changes the version; a
  body that also depends on something else (a template, a query parameter) puts it in the key.
"""

import logging
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import __version__, caching
from registry.api_errors import COMMON_ERRORS, error_code, error_response, errors
from registry.database import is_unavailable
from registry.dependencies import Database, DatabaseDep
from registry.errors import DatabaseUnavailable, SwregError
from registry.middleware import HeadAsGet, MaxBodySize
from registry.migrate import current_revisions, database_url
from registry.paths import API_PREFIX  # re-exported: registry.app.API_PREFIX
from registry.security_headers import SecurityHeaders

# Request bodies: a submission is two short strings; nothing the API takes comes near this.
MAX_BODY_BYTES = 8 * 1024

log = logging.getLogger("swreg.api")


def _routers() -> list[APIRouter]:
    from registry.changes.endpoints import router as changes_router
    from registry.index.endpoints import router as index_router
    from registry.jobs.endpoints import router as jobs_router
    from registry.jobs.endpoints import submissions as submissions_router
    from registry.superweights.endpoints import router as superweights_router

    # Matched in this order: the lookups, the hot path, first.
    return [
        superweights_router,
        index_router,
        changes_router,
        health_router,
        jobs_router,
        submissions_router,
    ]


# --- errors -----------------------------------------------------------------------------------


async def _swreg_error(_request: Request, exc: SwregError) -> JSONResponse:
    message = getattr(exc, "public_message", None) or str(exc)
    # e.g. WWW-Authenticate on a 401 (registry.auth.service.Unauthorized)
    return error_response(exc.http_status, error_code(exc), message, getattr(exc, "headers", None))


async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    # Database work outside Database.call (there, these become DatabaseUnavailable already).
    if is_unavailable(exc):
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return await _swreg_error(request, DatabaseUnavailable(str(exc)))
    log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "invalid_input", f"{where}: {first.get('msg', 'invalid')}")


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
    }.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


# --- health -----------------------------------------------------------------------------------

health_router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: str
    version: str


class Readiness(Liveness):
    schema_revision: list[str]


@health_router.get("/health", response_model=Liveness)
async def health() -> Liveness:
    """Liveness: the server process answers. It does not touch the database (see /ready)."""
    return Liveness(status="ok", version=__version__)


@health_router.get("/ready", response_model=Readiness, responses=errors(503))
async def ready(database: DatabaseDep) -> Readiness:
    """Readiness: the database answers (within the server's database timeout) and its schema
    is at the code's head; 503 otherwise."""
    revisions = await database.call(current_revisions, database.engine)
    return Readiness(status="ok", version=__version__, schema_revision=list(revisions))


# --- the application --------------------------------------------------------------------------


def create_app(url: str | None = None) -> FastAPI:
    """The API on the database at `url` (default: SWREG_DATABASE_URL / settings)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.database = Database.from_url(database_url(url))
        caching.install(app.state, app.state.database)
        try:
            yield
        finally:
            app.state.database.dispose()
            if (gate := getattr(app.state, "hub_gate", None)) is not None:
                gate.close()

    app = FastAPI(
        title="swreg",
        summary="A registry of super weights in large language models.",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # Served by registry.web.docs with local assets (the defaults load them from a CDN).
        docs_url=None,
        redoc_url=None,
        responses=COMMON_ERRORS,
    )
    # Starlette types every handler as taking any Exception; it calls each for its class only.
    app.add_exception_handler(SwregError, _swreg_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(SQLAlchemyError, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(MaxBodySize, limit=MAX_BODY_BYTES)
    app.add_middleware(HeadAsGet)
    # Outermost: every answer carries the headers, errors and 413s included.
    app.add_middleware(SecurityHeaders)
    for router in _routers():
        app.include_router(router, prefix=API_PREFIX)
    _add_web(app)
    return app


def _add_web(app: FastAPI) -> None:
    """The pages for people at the root, their static files, the API docs with local assets."""
    from fastapi.staticfiles import StaticFiles

    from registry.web.docs import add_docs
    from registry.web.endpoints import STATIC_DIR
    from registry.web.endpoints import router as pages_router

    add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(pages_router)
