"""The HTTP API: `create_app()` builds the FastAPI application (routers under /api/v1).

To add a router: put it in `_routers()` below; it is mounted under API_PREFIX and its errors
(any SwregError) become JSON bodies {"error": {"code", "message"}} with the error's HTTP status.
"""

import re
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import __version__
from registry.dependencies import Database, DatabaseDep
from registry.errors import SwregError
from registry.migrate import current_revisions, database_url

from registry.paths import API_PREFIX  # re-exported: registry.app.API_PREFIX


def _routers() -> list[APIRouter]:
    from registry.index.endpoints import router as index_router
    from registry.jobs.endpoints import router as jobs_router
    from registry.superweights.endpoints import router as superweights_router

    return [health_router, superweights_router, index_router, jobs_router]


# --- errors -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_code(exc: SwregError) -> str:
    # NotFound -> not_found, DatabaseOutOfDate -> database_out_of_date
    return getattr(exc, "code", None) or re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


async def _swreg_error(_request: Request, exc: SwregError) -> JSONResponse:
    response = error_response(exc.http_status, error_code(exc), str(exc))
    # e.g. WWW-Authenticate on a 401 (registry.auth.service.Unauthorized)
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "invalid_input", f"{where}: {first.get('msg', 'invalid')}")


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


# --- health -----------------------------------------------------------------------------------

health_router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str
    schema_revision: list[str]


@health_router.get("/health", response_model=Health, responses={503: {"model": ErrorBody}})
def health(database: DatabaseDep) -> Health:
    """The service is up and its database is reachable and at the code's schema head."""
    return Health(
        status="ok", version=__version__, schema_revision=list(current_revisions(database.engine))
    )


# --- the application --------------------------------------------------------------------------


def create_app(url: str | None = None) -> FastAPI:
    """The API on the database at `url` (default: SWREG_DATABASE_URL / settings)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.database = Database.from_url(database_url(url))
        try:
            yield
        finally:
            app.state.database.dispose()

    app = FastAPI(
        title="swreg",
        summary="A registry of super weights in large language models.",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # Served by registry.web.docs with local assets (the defaults load them from a CDN).
        docs_url=None,
        redoc_url=None,
        responses={422: {"model": ErrorBody, "description": "Invalid input"}},
    )
    app.add_exception_handler(SwregError, _swreg_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for router in _routers():
        app.include_router(router, prefix=API_PREFIX)
    _add_web(app)
    return app


def _add_web(app: FastAPI) -> None:
    """The pages for people at the root, their static files, the API docs with local assets."""
    from fastapi.staticfiles import StaticFiles

    from registry.web.docs import add_docs
    from registry.web.pages import STATIC_DIR
    from registry.web.pages import router as pages_router

    add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(pages_router)
