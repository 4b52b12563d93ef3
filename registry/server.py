"""`swreg serve`: the HTTP API under uvicorn."""

import socket

import click

from registry.database import make_engine
from registry.errors import SwregError
from registry.migrate import check_current, database_url
from registry.settings import get_settings


def _check_free(host: str, port: int) -> None:
    # uvicorn would log a traceback-ish error and exit; say it in one line before starting.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SwregError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command()
@click.option("--host", help="Interface to listen on (default SWREG_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port (default SWREG_PORT or 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the read API (and OpenAPI docs) over HTTP."""
    # FastAPI and uvicorn are imported here, so that other commands start faster.
    import uvicorn

    from registry.app import API_PREFIX, create_app

    settings = get_settings()
    host = host or settings.host
    port = settings.port if port is None else port
    url = database_url()
    engine = make_engine(url)
    try:
        check_current(engine)  # refuse an out-of-date database before listening
    finally:
        engine.dispose()
    _check_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}{API_PREFIX}"
    click.echo(f"swreg serving on http://{shown}:{port}/ (API: {base}, docs: {base}/docs)")
    uvicorn.run(create_app(url), host=host, port=port, log_level="info")
