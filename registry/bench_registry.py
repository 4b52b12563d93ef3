"""`swreg bench-registry`: the registry at scale. For each N it generates an index of N models
(registry.index.generate: 2 revisions × 3 coordinates each, a 30-layer profile per revision;
once per N, for every database), and for each database imports it into an empty database with
`swreg import`, imports it again (every revision held: the bulk upsert), exports it with `swreg
export`, serves it with `swreg serve`'s server and measures:

- import and re-import: wall time, revisions per second, peak RSS of the process;
- export: wall time, MB/s, peak RSS;
- the served index: time to the first byte and to the last of the first request (the body is
  built then), the server's peak RSS after it, and the second request (read from disk);
- lookup of random models, a page of the model list deep in the list (the last tenth) by its
  cursor (`after`) and by the deprecated `offset`, a search: p50 and p99 over a few hundred
  requests, one at a time;
- the changes feed: every page from the start (what a new mirror reads), and the time per page.

Above FULL_READ_MODELS models, the two reads of the whole registry over HTTP are sampled, so that
100,000 models (7.3 GB of index) finish in well under an hour on two cores: the index's first
request is read to its first INDEX_SAMPLE_MB (first byte, MB/s, the server's peak RSS; the
second request from disk is then not measured, since no body was completed), and the changes
feed to its first FEED_SAMPLE_PAGES pages (ms per page, and the whole feed estimated from it).
The output says which figures are sampled.

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
from urllib.parse import quote

import click

from registry.bench_api import _free_port, _start, _stop

DEFAULT_SIZES = (1000,)
REQUESTS = 300
SERVER_FACTORY = "registry.app:create_app"
PAGE_LIMIT = 50
# Deep pages: a random place in the last tenth of the list.
DEEP_FRACTION = 0.9
# Up to this many models the whole index and the whole changes feed are read; above, a sample.
FULL_READ_MODELS = 10_000
INDEX_SAMPLE_MB = 200
FEED_SAMPLE_PAGES = 20
FEED_PAGE = 500


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
    connection: HTTPConnection,
    path: str,
    headers: dict | None = None,
    max_bytes: int | None = None,
) -> tuple[int, float, float, int]:
    """Status, seconds to the first byte of the body, seconds to the last (or to `max_bytes`:
    the connection is then closed), bytes read."""
    start = time.perf_counter()
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    first = response.read(1)
    first_at = time.perf_counter() - start
    size = len(first)
    while (max_bytes is None or size < max_bytes) and (chunk := response.read(1 << 20)):
        size += len(chunk)
    elapsed = time.perf_counter() - start
    if max_bytes is not None and size >= max_bytes:
        connection.close()
    return response.status, first_at, elapsed, size


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


def _changes(port: int, max_pages: int | None) -> dict[str, float] | None:
    """Every page of the feed from the start (or its first `max_pages`)."""
    connection = HTTPConnection("127.0.0.1", port, timeout=600)
    cursor, pages, items = "0", 0, 0
    start = time.perf_counter()
    while max_pages is None or pages < max_pages:
        connection.request("GET", f"/api/v1/changes?since={cursor}&limit={FEED_PAGE}")
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
        "sampled": max_pages is not None,
    }


def _deep_pages(port: int, n: int, rng: random.Random) -> dict[str, dict[str, float] | None]:
    """Pages of the model list at random places in its last tenth: by cursor (the model id
    before the place) and by offset. A server without cursors answers `after` with the first
    page: then only the offset is measured."""
    from registry.index.generate import model_id

    places = [rng.randrange(int(DEEP_FRACTION * n), n) for _ in range(REQUESTS)]
    figures: dict[str, dict[str, float] | None] = {
        "offset": _latencies(
            port, [f"/api/v1/models?limit={PAGE_LIMIT}&offset={k}" for k in places]
        )
    }
    connection = HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("GET", f"/api/v1/models?limit=1&after={quote(model_id(0), safe='')}")
    response = connection.getresponse()
    page = json.loads(response.read())
    connection.close()
    if response.status != 200 or "next" not in page:
        figures["cursor"] = None
        return figures
    paths = [
        f"/api/v1/models?limit={PAGE_LIMIT}&after={quote(model_id(k - 1), safe='')}" for k in places
    ]
    figures["cursor"] = _latencies(port, paths)
    return figures


def _serve_and_measure(env: dict[str, str], n: int, seed: int) -> dict:
    port = _free_port()
    server = _start(SERVER_FACTORY, port, 1, env, "/api/v1/health")
    sampled = n > FULL_READ_MODELS
    try:
        figures: dict = {"server_rss_at_start_mb": _rss_mb(server.pid)["rss_mb"]}
        connection = HTTPConnection("127.0.0.1", port, timeout=3600)
        identity = {"Accept-Encoding": "identity"}
        limit = INDEX_SAMPLE_MB * 1_000_000 if sampled else None
        status, first_byte, total, size = _get(connection, "/api/v1/index", identity, limit)
        if status != 200:
            raise click.ClickException(f"the first index request answered {status}")
        figures["index_first"] = {
            "first_byte_s": first_byte,
            "seconds": total,
            "mb": size / 1e6,
            "mb_per_s": size / 1e6 / total,
            "sampled": sampled,
            **_rss_mb(server.pid),
        }
        if not sampled:
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
        figures["list_deep"] = _deep_pages(port, n, rng)
        figures["search"] = _latencies(
            port, [f"/api/v1/models?q=model-{rng.randrange(n):07d}" for _ in range(REQUESTS)]
        )
        figures["changes_feed"] = _changes(port, FEED_SAMPLE_PAGES if sampled else None)
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


def bench_one(
    n: int, kind: str, postgres_url: str | None, pythonpath: str | None, document: Path
) -> dict:
    with tempfile.TemporaryDirectory(prefix="swreg-bench-registry-") as tmp:
        directory = Path(tmp)
        result: dict = {
            "models": n,
            "revisions": 2 * n,
            "database": kind,
            "document_mb": document.stat().st_size / 1e6,
        }
        with _database(kind, directory, postgres_url) as url:
            env = _python_env(url, directory / "index-cache", pythonpath)
            _run(["db", "upgrade"], env, directory)
            for step in ("import", "reimport"):
                ran = _run(["import", str(document)], env, directory)
                result[step] = {**ran, "revisions_per_s": 2 * n / ran["seconds"]}
            exported = _run(["export", "-o", str(directory / "export.json")], env, directory)
            result["export"] = {**exported, "mb_per_s": result["document_mb"] / exported["seconds"]}
            result["export_equals_document"] = _same_file(directory / "export.json", document)
            (directory / "export.json").unlink()
            result.update(_serve_and_measure(env, n, seed=n))
    return result


def _pair(figures: dict | None) -> str:
    return "–" if figures is None else f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f}"


def _row(r: dict) -> str:
    changes = r.get("changes_feed")
    index = r["index_first"]
    if index.get("sampled"):
        index_text = (
            f"{index['first_byte_s'] * 1000:.0f} ms / first {index['mb']:.0f} MB at "
            f"{index['mb_per_s']:.1f} MB/s (sampled)"
        )
    else:
        index_text = f"{index['first_byte_s'] * 1000:.0f} ms / {index['seconds']:.1f} s"
    second = r.get("index_second")
    again = "–" if second is None else f"{second['seconds']:.1f} s"
    if changes is None:
        feed = "–"
    elif changes.get("sampled"):
        estimate = changes["ms_per_page"] / 1000 * r["revisions"] / FEED_PAGE
        feed = (
            f"{changes['pages']} pages sampled, {changes['ms_per_page']:.0f} ms/page "
            f"(all ≈ {estimate:.0f} s)"
        )
    else:
        feed = f"{changes['seconds']:.1f} s ({changes['ms_per_page']:.0f} ms/page)"
    deep = r["list_deep"]
    return (
        f"| {r['models']:,} | {r['database']} "
        f"| {r['import']['seconds']:.1f} s ({r['import']['revisions_per_s']:,.0f} rev/s, "
        f"{r['import']['peak_rss_mb']:.0f} MB) "
        f"| {r['reimport']['seconds']:.1f} s ({r['reimport']['revisions_per_s']:,.0f} rev/s, "
        f"{r['reimport']['peak_rss_mb']:.0f} MB) "
        f"| {r['export']['seconds']:.1f} s ({r['export']['peak_rss_mb']:.0f} MB) "
        f"| {index_text} | {index['peak_rss_mb']:.0f} MB "
        f"| {again} "
        f"| {_pair(r['lookup'])} | {_pair(deep['cursor'])} | {_pair(deep['offset'])} "
        f"| {_pair(r['search'])} | {feed} |"
    )


HEADER = (
    "| models | database | import | re-import (all held) | export "
    "| index first byte / whole | server peak RSS | index again (disk) | lookup p50/p99 ms "
    "| deep list page by cursor p50/p99 ms | deep list page by offset p50/p99 ms "
    "| search p50/p99 ms | changes feed, all pages |\n"
    "|---:|---|---|---|---|---|---:|---:|---|---|---|---|---|"
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
    """Import, re-import, export, the served index, lookups, deep list pages, search and the
    changes feed of a generated registry of N models, on SQLite and PostgreSQL (about ten
    minutes per 10,000 models and database on two cores; 100,000 samples the whole-registry
    reads, see the module's docstring).

    \b
    Examples:
      swreg bench-registry -n 1000
      swreg bench-registry -n 1000 -n 10000 --postgres-url postgresql+psycopg://postgres@127.0.0.1/test
    """
    sizes = sizes or DEFAULT_SIZES
    databases = databases or (("sqlite", "postgresql") if postgres_url else ("sqlite",))
    results = []
    click.echo(HEADER)
    from registry.index.generate import write_generated

    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="swreg-bench-document-") as tmp:
            start = time.perf_counter()
            document = write_generated(Path(tmp) / "index.json", n)
            generated_s = time.perf_counter() - start
            for kind in databases:
                result = bench_one(n, kind, postgres_url, pythonpath, document)
                result["generate_s"] = generated_s
                results.append(result)
                click.echo(_row(result))
    if any(n > FULL_READ_MODELS for n in sizes):
        click.echo(
            f"Above {FULL_READ_MODELS:,} models the whole index and the whole changes feed are "
            f"sampled: the index's first {INDEX_SAMPLE_MB} MB, the feed's first "
            f"{FEED_SAMPLE_PAGES} pages (the total is estimated from them)."
        )
    if json_path:
        json_path.write_text(
            json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2) + "\n"
        )
