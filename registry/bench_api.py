"""`swreg bench-api`: the API's throughput against a bare FastAPI hello-world, in one run.

Both servers are started the same way (registry.server.run_server: uvicorn, the same number of
processes, no access log) on loopback ports, one after the other, and loaded by `wrk` (Debian's
package: `apt-get install wrk`) with the same threads, connections and duration. The registry is
a fresh SQLite file holding the shipped published index. Rounds alternate hello-world and the
registry's endpoints, so that a machine whose load drifts treats both alike; the figures are the
median over the rounds. It prints requests per second, p50 and p99 latency per endpoint, and the
ratio of each to hello-world.

This is a benchmark, not a test: it prints figures and judges nothing.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

HELLO_FACTORY = "registry.bench_api:hello_app"
# What is measured (path under the server, label).
HELLO_PATH = "/hello"
ENDPOINTS = {
    "lookup": "/api/v1/models/huggyllama/llama-7b",
    "models": "/api/v1/models?limit=50",
    "index": "/api/v1/index",
}
START_TIMEOUT_S = 60
WARMUP_SECONDS = 2


def hello_app():
    """The reference: the smallest FastAPI application, one JSON route."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(HELLO_PATH)
    async def hello():
        return {"hello": "world"}

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(factory: str, port: int, workers: int, env: dict[str, str], probe: str):
    code = (
        "from registry.server import run_server\n"
        f"run_server({factory!r}, host='127.0.0.1', port={port}, workers={workers}, "
        "access_log=False, log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"the server for {factory} exited ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            if _status(port, probe) == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise click.ClickException(f"the server for {factory} did not start")


def _status(port: int, path: str) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _search(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    found = re.search(pattern, text, flags)
    if found is None:
        raise ValueError(f"no {pattern!r} in wrk's output: {text!r}")
    return found


def _ms(text: str) -> float:
    value, unit = _search(r"^([0-9.]+)(us|ms|s)$", text).groups()
    return float(value) * _UNITS[unit]


def _wrk(url: str, *, threads: int, connections: int, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    rps = float(_search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p50 = _ms(_search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))
    p99 = _ms(_search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        raise click.ClickException(f"wrk saw errors on {url}:\n{out}")
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99}


def _prepare_registry(directory: Path) -> str:
    from registry import migrate
    from registry.database import transaction
    from registry.index import service as index_service
    from workers.contract.resources import PUBLISHED_INDEX_PATH

    url = f"sqlite:///{directory / 'bench.db'}"
    migrate.upgrade(url)
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    with transaction(migrate.open_registry(url)) as session:
        index_service.import_document(session, document)
    return url


@click.command("bench-api")
@click.option("--seconds", type=click.IntRange(1, 300), default=10, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--connections", type=click.IntRange(1, 1000), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes, for both servers (swreg serve's default is 1).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures here.",
)
def bench_api(
    seconds: int, rounds: int, connections: int, threads: int, workers: int, json_path
) -> None:
    """Requests/s and p99 of the lookup, model list and index against a FastAPI hello-world
    served the same way, in one run (needs `wrk`: apt-get install wrk).

    \b
    Examples:
      swreg bench-api
      swreg bench-api --seconds 5 --rounds 1          # a quick look
      swreg bench-api --workers 2 --json api.json
    """
    if shutil.which("wrk") is None:
        raise click.ClickException("wrk not found: install it (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="swreg-bench-api-") as tmp:
        url = _prepare_registry(Path(tmp))
        env = {**os.environ, "SWREG_DATABASE_URL": url}
        hello_port, swreg_port = _free_port(), _free_port()
        hello = _start(HELLO_FACTORY, hello_port, workers, env, HELLO_PATH)
        try:
            swreg = _start("registry.app:create_app", swreg_port, workers, env, ENDPOINTS["lookup"])
        except BaseException:
            _stop(hello)
            raise
        try:
            targets = {"hello-world": f"http://127.0.0.1:{hello_port}{HELLO_PATH}"}
            targets |= {k: f"http://127.0.0.1:{swreg_port}{p}" for k, p in ENDPOINTS.items()}
            for target in targets.values():  # warm up: imports, caches, connections
                _wrk(target, threads=threads, connections=connections, seconds=WARMUP_SECONDS)
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for round_number in range(1, rounds + 1):
                for name, target in targets.items():
                    figures = _wrk(
                        target, threads=threads, connections=connections, seconds=seconds
                    )
                    samples[name].append(figures)
                    click.echo(
                        f"round {round_number}/{rounds}  {name:<12} {figures['rps']:>9.1f} req/s"
                        f"  p99 {figures['p99_ms']:.2f} ms",
                        err=True,
                    )
        finally:
            _stop(swreg)
            _stop(hello)
    summary = {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    reference = summary["hello-world"]["rps"]
    click.echo(
        f"wrk -t{threads} -c{connections} -d{seconds}s, {rounds} round(s), medians; "
        f"{workers} server process(es) each; CPUs: {os.cpu_count()}"
    )
    click.echo(f"{'endpoint':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x hello':>8}")
    for name, figures in summary.items():
        figures["ratio_to_hello_world"] = round(figures["rps"] / reference, 3)
        click.echo(
            f"{name:<12} {figures['rps']:>9.1f} {figures['p50_ms']:>8.2f} "
            f"{figures['p99_ms']:>8.2f} {figures['ratio_to_hello_world']:>8.2f}"
        )
    if json_path:
        document = {
            "wrk": {"threads": threads, "connections": connections, "seconds": seconds},
            "rounds": rounds,
            "server_processes": workers,
            "cpus": os.cpu_count(),
            "paths": {"hello-world": HELLO_PATH, **ENDPOINTS},
            "summary": summary,
            "samples": samples,
        }
        json_path.write_text(json.dumps(document, indent=2) + "\n")
