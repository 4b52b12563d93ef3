"""`swreg bench-registry`: the registry at scale. For each N and database it generates an index
of N models (registry.index.generate: 2 revisions × 3 coordinates each, a 30-layer profile per
revision), imports it into an empty database with `swreg import`, exports it with `swreg
export`, serves it with `swreg serve`'s server and measures:

- import: wall time, revisions per second, peak RSS of the process;
- export: wall time, MB/s, peak RSS;
- the served index: time to the first byte and to the last of the first request (the body is
  built then), the server's peak RSS after it, and the second request (read from disk);
- lookup of random models, a page of the model list, a search: p50 and p99 over a few hundred
  requests, one at a time;
- the changes feed: every page from the start (what a new mirror reads), and the time per page.

Each step runs as a user runs it (subprocesses, real HTTP over loopback). PostgreSQL runs get a
fresh schema of the database named by --postgres-url, dropped afterwards.

This is a benchmark, not a test: it prints figures and judges nothing.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path

import click

from registry.bench_api import _free_port, _start, _stop

DEFAULT_SIZES = (1000,)
REQUESTS = 300
SERVER_FACTORY = "registry.app:create_app"
PAGE_LIMIT = 50


def _python_env(url: str, cache_dir: Path, pythonpath: str | None) -> dict[str, str]:
    env = {**os.environ, "SWREG_DATABASE_URL": url, "SWREG_INDEX_CACHE_DIR": str(cache_dir)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _run(args: list[str], env: dict[str, str], directory: Path) -> dict[str, float]:
    """A `swreg` command in its own process: wall seconds and peak RSS (MB). The peak is read
    by GNU time when it is installed: a child forked from this (large) process would otherwise
    count this process's pages in its own peak until it execs."""
    command = [sys.executable, "-c", "from registry.cli import main; main()", *args]
    rss_file = directory / "rss.txt"
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if timer:
        command = [timer, "-f", "%M", "-o", str(rss_file), *command]
    start = time.perf_counter()
    result = subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise click.ClickException(
            f"swreg {' '.join(args)} failed: {result.stderr.decode()[-500:]}"
        )
    peak = int(rss_file.read_text().split()[-1]) / 1024 if timer else float("nan")
    return {"seconds": elapsed, "peak_rss_mb": peak}


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as left, b.open("rb") as right:
        while chunk := left.read(1 << 20):
            if chunk != right.read(1 << 20):
                return False
    return True


def _rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def _get(
    connection: HTTPConnection, path: str, headers: dict | None = None
) -> tuple[int, float, float, int]:
    """Status, seconds to the first byte of the body, seconds to the last, bytes."""
    start = time.perf_counter()
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    first = response.read(1)
    first_at = time.perf_counter() - start
    size = len(first)
    while chunk := response.read(1 << 20):
        size += len(chunk)
    return response.status, first_at, time.perf_counter() - start, size


def _latencies(port: int, paths: list[str]) -> dict[str, float]:
    connection = HTTPConnection("127.0.0.1", port, timeout=600)
    times = []
    for path in paths:
        status, _, total, _ = _get(connection, path)
        if status != 200:
            raise click.ClickException(f"GET {path} answered {status}")
        times.append(total * 1000)
    connection.close()
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
    }


def _changes(port: int) -> dict[str, float] | None:
    connection = HTTPConnection("127.0.0.1", port, timeout=600)
    cursor, pages, items = "0", 0, 0
    start = time.perf_counter()
    while True:
        connection.request("GET", f"/api/v1/changes?since={cursor}&limit=500")
        response = connection.getresponse()
        body = response.read()
        if response.status == 404 and pages == 0:
            return None  # a server without the feed (another checkout)
        if response.status != 200:
            raise click.ClickException(f"the changes feed answered {response.status}")
        page = json.loads(body)
        pages += 1
        items += len(page["changes"])
        if not page["has_more"]:
            break
        cursor = page["next"]
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "pages": pages,
        "changes": items,
        "ms_per_page": 1000 * elapsed / pages,
    }


def _serve_and_measure(env: dict[str, str], n: int, seed: int) -> dict:
    port = _free_port()
    server = _start(SERVER_FACTORY, port, 1, env, "/api/v1/health")
    try:
        figures: dict = {"server_rss_at_start_mb": _rss_mb(server.pid)["rss_mb"]}
        connection = HTTPConnection("127.0.0.1", port, timeout=3600)
        identity = {"Accept-Encoding": "identity"}
        status, first_byte, total, size = _get(connection, "/api/v1/index", identity)
        if status != 200:
            raise click.ClickException(f"the first index request answered {status}")
        figures["index_first"] = {
            "first_byte_s": first_byte,
            "seconds": total,
            "mb": size / 1e6,
            **_rss_mb(server.pid),
        }
        status, first_byte, total, size = _get(connection, "/api/v1/index", identity)
        figures["index_second"] = {
            "first_byte_s": first_byte,
            "seconds": total,
            **_rss_mb(server.pid),
        }
        connection.close()
        from registry.index.generate import model_id

        rng = random.Random(seed)
        figures["lookup"] = _latencies(
            port, [f"/api/v1/models/{model_id(rng.randrange(n))}" for _ in range(REQUESTS)]
        )
        figures["list"] = _latencies(
            port,
            [
                f"/api/v1/models?limit={PAGE_LIMIT}&offset={rng.randrange(n)}"
                for _ in range(REQUESTS)
            ],
        )
        figures["search"] = _latencies(
            port, [f"/api/v1/models?search=model-{rng.randrange(n):07d}" for _ in range(REQUESTS)]
        )
        figures["changes_feed"] = _changes(port)
        figures["server_after"] = _rss_mb(server.pid)
    finally:
        _stop(server)
    return figures


@contextmanager
def _database(kind: str, directory: Path, postgres_url: str | None) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not postgres_url:
        raise click.ClickException("--postgres-url is needed for postgresql")
    schema = f"swreg_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def bench_one(n: int, kind: str, postgres_url: str | None, pythonpath: str | None) -> dict:
    from registry.index.generate import write_generated

    with tempfile.TemporaryDirectory(prefix="swreg-bench-registry-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        document = write_generated(directory / "index.json", n)
        result: dict = {
            "models": n,
            "revisions": 2 * n,
            "database": kind,
            "document_mb": document.stat().st_size / 1e6,
            "generate_s": time.perf_counter() - start,
        }
        with _database(kind, directory, postgres_url) as url:
            env = _python_env(url, directory / "index-cache", pythonpath)
            _run(["db", "upgrade"], env, directory)
            imported = _run(["import", str(document)], env, directory)
            result["import"] = {**imported, "revisions_per_s": 2 * n / imported["seconds"]}
            exported = _run(["export", "-o", str(directory / "export.json")], env, directory)
            result["export"] = {**exported, "mb_per_s": result["document_mb"] / exported["seconds"]}
            result["export_equals_document"] = _same_file(directory / "export.json", document)
            (directory / "export.json").unlink()
            result.update(_serve_and_measure(env, n, seed=n))
    return result


def _row(r: dict) -> str:
    changes = r.get("changes_feed")
    return (
        f"| {r['models']:,} | {r['database']} | {r['import']['seconds']:.1f} s "
        f"({r['import']['revisions_per_s']:,.0f} rev/s, {r['import']['peak_rss_mb']:.0f} MB) "
        f"| {r['export']['seconds']:.1f} s ({r['export']['peak_rss_mb']:.0f} MB) "
        f"| {r['index_first']['first_byte_s'] * 1000:.0f} ms / {r['index_first']['seconds']:.1f} s "
        f"| {r['index_first']['peak_rss_mb']:.0f} MB | {r['index_second']['seconds']:.1f} s "
        f"| {r['lookup']['p50_ms']:.1f} / {r['lookup']['p99_ms']:.1f} "
        f"| {r['list']['p50_ms']:.1f} / {r['list']['p99_ms']:.1f} "
        f"| {r['search']['p50_ms']:.1f} / {r['search']['p99_ms']:.1f} "
        + (
            f"| {changes['seconds']:.1f} s ({changes['ms_per_page']:.0f} ms/page) |"
            if changes
            else "| – |"
        )
    )


HEADER = (
    "| models | database | import | export | index first byte / whole | server peak RSS "
    "| index again (disk) | lookup p50/p99 ms | list p50/p99 ms | search p50/p99 ms "
    "| changes feed, all pages |\n"
    "|---:|---|---|---|---|---:|---:|---|---|---|---|"
)


@click.command("bench-registry")
@click.option(
    "-n",
    "--models",
    "sizes",
    type=click.IntRange(1, 10_000_000),
    multiple=True,
    help=f"Models to generate (repeatable; default {DEFAULT_SIZES[0]:,}).",
)
@click.option(
    "--database",
    "databases",
    type=click.Choice(["sqlite", "postgresql"]),
    multiple=True,
    help="Repeatable; default sqlite, and postgresql too when --postgres-url is given.",
)
@click.option(
    "--postgres-url",
    envvar="SWREG_BENCH_POSTGRES_URL",
    metavar="URL",
    help="A PostgreSQL database to make a scratch schema in (or SWREG_BENCH_POSTGRES_URL).",
)
@click.option(
    "--pythonpath",
    metavar="DIR",
    help="Run swreg's commands and server from another checkout (before/after comparisons).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every figure here.",
)
def bench_registry(sizes, databases, postgres_url, pythonpath, json_path) -> None:
    """Import, export, the served index, lookups, lists, search and the changes feed of a
    generated registry of N models, on SQLite and PostgreSQL (minutes per 10,000 models).

    \b
    Examples:
      swreg bench-registry -n 1000
      swreg bench-registry -n 1000 -n 10000 --postgres-url postgresql+psycopg://postgres@127.0.0.1/test
    """
    sizes = sizes or DEFAULT_SIZES
    databases = databases or (("sqlite", "postgresql") if postgres_url else ("sqlite",))
    results = []
    click.echo(HEADER)
    for n in sizes:
        for kind in databases:
            result = bench_one(n, kind, postgres_url, pythonpath)
            results.append(result)
            click.echo(_row(result))
    if json_path:
        json_path.write_text(
            json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2) + "\n"
        )
