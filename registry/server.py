"""`swreg serve`: the HTTP API under uvicorn.

How many processes: one by default (SWREG_WEB_WORKERS, --workers). One uvicorn process already
keeps a core busy, the lookups it answers cost little more than uvicorn's own HTTP handling
(docs/measurements.md), and the machine that serves usually runs `swreg worker` beside it (the
`make run` layout), whose torch threads want the other cores. Set --workers to the cores that are
free for serving; every process keeps its own response cache and database pool.
"""

import os
import socket

import click

from registry.errors import SwregError

# The application factory uvicorn imports in each worker process.
APP_FACTORY = "registry.app:create_app"


def _check_free(host: str, port: int) -> None:
    # uvicorn would log a traceback-ish error and exit; say it in one line before starting.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SwregError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def run_server(
    factory: str, *, host: str, port: int, workers: int, access_log: bool, log_level: str = "info"
) -> None:
    """Serve the ASGI app that `factory` ("module:function") builds, the way `swreg serve` does
    (the API benchmark serves its hello-world reference through here too)."""
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
    )


@click.command()
@click.option("--host", help="Interface to listen on (default SWREG_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port (default SWREG_PORT or 8000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server processes (default SWREG_WEB_WORKERS or 1).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log every request (costs throughput: one log line per request).",
)
def serve(host: str | None, port: int | None, workers: int | None, access_log: bool) -> None:
    """Serve the HTTP API (and OpenAPI docs). Starts while the database is down: data endpoints
    and /ready answer 503 until it is back.

    \b
    Examples:
      swreg serve
      swreg serve --host 0.0.0.0 --port 8080 --workers 2
      SWREG_DATABASE_URL=postgresql+psycopg://swreg@db-host/swreg swreg serve --access-log
    """
    from registry.app import API_PREFIX
    from registry.database import make_engine
    from registry.errors import DatabaseUnavailable
    from registry.migrate import check_current, database_url
    from registry.settings import get_settings

    settings = get_settings()
    host = host or settings.host
    port = settings.port if port is None else port
    workers = workers or settings.web_workers
    url = database_url()
    engine = make_engine(url)
    try:
        check_current(engine)  # refuse an out-of-date database before listening
    except DatabaseUnavailable as exc:
        click.echo(f"warning: {exc}; serving anyway (503 until it is back)", err=True)
    finally:
        engine.dispose()
    _check_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}{API_PREFIX}"
    click.echo(f"swreg serving on http://{shown}:{port}/ (API: {base}, docs: {base}/docs)")
    # Every worker process builds its app from the settings: hand it the URL in use.
    os.environ["SWREG_DATABASE_URL"] = url
    run_server(APP_FACTORY, host=host, port=port, workers=workers, access_log=access_log)
