"""The API documentation pages (Swagger UI and ReDoc) with their scripts and styles served by
this server, so that they render with no internet (air-gapped clusters, a laptop on a train).

The assets come from the `fastapi-offline` package, which ships Swagger UI's and ReDoc's
distribution files. Swagger UI's OAuth2 redirect page lives under the docs path too.
"""

import base64
import hashlib
import re
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
# a CDN, and this policy keeps the browser from even asking. The only inline scripts allowed are
# the pages' own start-up scripts, by the hash of their text (computed from the page itself);
# inline styles are ReDoc's generated ones (a style cannot run script); ReDoc's search runs in a
# blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _local_only(response: HTMLResponse) -> HTMLResponse:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(response.body)
    )
    response.headers["Content-Security-Policy"] = DOCS_CSP.format(scripts=hashes)
    return response


def assets_dir() -> str:
    return str(files("fastapi_offline") / "static")


def add_docs(app: FastAPI) -> None:
    """Swagger UI at DOCS_PATH and ReDoc at REDOC_PATH, on the app's OpenAPI document."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = app.title

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _local_only(
            get_swagger_ui_html(
                openapi_url=app.openapi_url or "",
                title=f"{title} API",
                oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
                swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
                swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
            )
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return _local_only(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_PATH, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _local_only(
            get_redoc_html(
                openapi_url=app.openapi_url or "",
                title=f"{title} API",
                redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            )
        )
