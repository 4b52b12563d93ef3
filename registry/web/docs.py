"""The API documentation pages (Swagger UI and ReDoc) with their scripts and styles served by
this server, so that they render with no internet (air-gapped clusters, a laptop on a train).

The assets come from the `fastapi-offline` package, which ships Swagger UI's and ReDoc's
distribution files. Swagger UI's OAuth2 redirect page lives under the docs path too.
"""

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from registry.paths import API_PREFIX

DOCS_PATH = f"{API_PREFIX}/docs"
REDOC_PATH = f"{API_PREFIX}/redoc"
OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"
ASSETS_PATH = f"{DOCS_PATH}/assets"
# Swagger UI's defaults would fetch a validator badge from the internet: no validator.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "displayRequestDuration": True}
# Nothing on the docs pages may come from elsewhere: ReDoc's bundle shows its maker's logo from
# a CDN, and this policy keeps the browser from even asking. Inline scripts and styles are the
# pages' own (Swagger UI's start-up script; ReDoc's generated styles); ReDoc's search runs in a
# blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:"
)


def _local_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def assets_dir() -> str:
    return str(files("fastapi_offline") / "static")


def add_docs(app: FastAPI) -> None:
    """Swagger UI at DOCS_PATH and ReDoc at REDOC_PATH, on the app's OpenAPI document."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = app.title

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _local_only(get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{title} API",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        ))

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _local_only(get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{title} API",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        ))
