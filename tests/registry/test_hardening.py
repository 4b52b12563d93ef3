"""The API as an attacker and a demanding user meet it, over real HTTP (uvicorn on a loopback
port), on SQLite and PostgreSQL: each request that once broke the server, and what it answers
now. (The outage of a real PostgreSQL server, stopped and frozen, is tests/test_outage.py.)"""

import gzip
import json
import os
import socket
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
from sqlalchemy import func, select

from registry.app import create_app
from registry.database import transaction
from registry.jobs.models import Job
from registry.superweights import service
from registry.superweights.documents import parse_time
from registry.superweights.models import ModelRevision, SuperWeight
from tests.helpers import REPO, SHA_A, LiveServer, free_port, make_checkpoint
from workers.fixtures.hf_cache import install_into_hf_cache

API = "/api/v1"
LOOKUP = f"{API}/models/huggyllama/llama-7b"
SECRET = "s3cret-password"


@pytest.fixture
def server(db_url, published, hf_cache):
    with LiveServer(create_app(db_url)) as live:
        yield live


def _jobs(db_sessions) -> int:
    with db_sessions() as session:
        return session.scalar(select(func.count()).select_from(Job))


# --- a revision is no file name ----------------------------------------------------------------


def test_a_revision_naming_a_file_is_422_and_nothing_is_read(
    server, token, tmp_path, hf_cache, db_sessions
):
    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)
    blobs = next(hf_cache.glob("models--*")) / "blobs"
    os.mkfifo(blobs / "fifo")  # whoever opens it to read would wait forever
    headers = {"Authorization": f"Bearer {token}"}
    for revision in ("/usr/bin/env", "../blobs/fifo", "../../../../../../dev/zero"):
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}{API}/submissions",
            json={"model": REPO, "revision": revision},
            headers=headers,
            timeout=20,
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_input"
        assert time.monotonic() - started < 10
    assert _jobs(db_sessions) == 0


# --- database outages: 503 JSON with Retry-After, no URL, and recovery without a restart -------


@pytest.fixture(params=["sqlite", "postgresql"])
def dead_db_url(request, tmp_path) -> str:
    """A database that cannot be reached: a SQLite file under a path that is a file, or a
    PostgreSQL server at a closed port (a URL with a password, which no answer may show)."""
    if request.param == "sqlite":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the database's folder should be")
        return f"sqlite:///{blocker}/swreg.db"
    return f"postgresql+psycopg://swreg:{SECRET}@127.0.0.1:{free_port()}/swreg"


DATA_REQUESTS = [
    ("GET", f"{API}/ready"),
    ("GET", f"{API}/models"),
    ("GET", LOOKUP),
    ("GET", f"{API}/index"),
    ("GET", f"{API}/jobs"),
    ("GET", f"{API}/jobs/1"),
    ("HEAD", LOOKUP),
    ("POST", f"{API}/submissions"),
]


def test_an_unreachable_database_is_a_503_on_every_endpoint(dead_db_url, hf_cache):
    with LiveServer(create_app(dead_db_url)) as live, httpx.Client(base_url=live.url) as client:
        assert client.get(f"{API}/health").status_code == 200  # liveness: the process answers
        for method, path in DATA_REQUESTS:
            started = time.monotonic()
            response = client.request(
                method,
                path,
                json={"model": REPO} if method == "POST" else None,
                headers={"Authorization": "Bearer swreg_anything"},
            )
            assert response.status_code == 503, (method, path, response.text)
            assert time.monotonic() - started < 10
            assert int(response.headers["retry-after"]) > 0
            if method == "HEAD":
                continue
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert error["code"] == "database_unavailable", error
            for secret in (SECRET, "127.0.0.1", "postgresql", "sqlite", "blocker", "swreg.db"):
                assert secret not in response.text, (path, response.text)


def test_a_server_started_without_its_database_recovers_without_a_restart(tmp_path, hf_cache):
    from registry import migrate
    from registry.index import service as index_service
    from workers.contract.resources import PUBLISHED_INDEX_PATH

    blocker = tmp_path / "data"
    blocker.write_text("not yet a folder")
    url = f"sqlite:///{blocker}/swreg.db"
    with LiveServer(create_app(url)) as live, httpx.Client(base_url=live.url) as client:
        assert client.get(LOOKUP).status_code == 503
        assert client.get(f"{API}/ready").status_code == 503
        blocker.unlink()
        blocker.mkdir()
        migrate.upgrade(url)
        with transaction(migrate.open_registry(url)) as session:
            index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
        assert client.get(f"{API}/ready").status_code == 200
        lookup = client.get(LOOKUP)
        assert lookup.status_code == 200, lookup.text
        assert lookup.json()["model_id"] == "huggyllama/llama-7b"


# --- integers and strings that once reached the database unchecked -----------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/jobs/9223372036854775808",
        f"{API}/jobs/2147483648",  # past the 32-bit id column (PostgreSQL refused it with 500)
        f"{API}/jobs/0",
        f"{API}/models?offset=9223372036854775808",
        f"{API}/models?offset=2147483648",
        f"{API}/jobs?offset=9223372036854775808",
        f"{API}/models?limit=100000",
        f"{API}/jobs?limit=100000",
        f"{API}/models/a%00b",  # NUL: PostgreSQL refused it with 500
        f"{API}/models/..%2F..%2Fetc%2Fpasswd",
        f"{API}/models/x'%20OR%20'1'='1",
        f"{LOOKUP}?revision=%27%20OR%201%3D1%20--",
        f"{LOOKUP}?revision=a%00b",
        f"{API}/models/" + "a" * 5000,
    ],
)
def test_out_of_range_and_hostile_input_is_422(server, path):
    response = httpx.get(f"{server.url}{path}", timeout=20)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


def test_the_largest_id_and_offset_are_answered(server):
    assert httpx.get(f"{server.url}{API}/jobs/2147483647").status_code == 404
    page = httpx.get(f"{server.url}{API}/models?offset=2147483647").json()
    assert page["items"] == [] and page["total"] == 13


# --- bounded bodies, token first -----------------------------------------------------------------


def _raw(port: int, head: str, chunks: list[bytes] = (), *, timeout: float = 10) -> bytes:
    """Send a request's head and then `chunks` (as they are), and read what comes back until
    the server closes or `timeout` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: it read no further
                break
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
                if b"\r\n\r\n" in received and b'"error"' in received:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1") else 0


def test_a_huge_declared_body_is_413_before_anything_is_read(server, token):
    head = (
        f"POST {API}/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 300000000\r\n\r\n"
    )
    started = time.monotonic()
    raw = _raw(server.port, head)  # no byte of the body is ever sent
    assert _status(raw) == 413, raw[:300]
    assert b"request_too_large" in raw
    assert time.monotonic() - started < 5


def test_a_chunked_upload_without_a_token_is_401_having_read_nothing(server):
    head = (
        f"POST {API}/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    started = time.monotonic()
    # The head only: a server that reads the body before the token would wait for it here.
    raw = _raw(server.port, head)
    assert _status(raw) == 401, raw[:300]
    assert time.monotonic() - started < 5


def test_a_chunked_upload_past_the_limit_is_413(server, token, db_sessions):
    head = (
        f"POST {API}/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"1000\r\n" + b" " * 0x1000 + b"\r\n"  # 4 KiB of JSON whitespace per chunk
    raw = _raw(server.port, head, [chunk] * 10_000)  # 40 MB, if anybody read it all
    assert _status(raw) == 413, raw[:300]
    assert _jobs(db_sessions) == 0


# --- the Hub -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["hub_down", "hub_failing"])
def test_an_unreachable_hub_at_submission_is_a_retryable_503(
    request, db_url, token, db_sessions, state
):
    request.getfixturevalue(state)
    with LiveServer(create_app(db_url)) as live:
        response = httpx.post(
            f"{live.url}{API}/submissions",
            json={"model": "acme/not-cached"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "hub_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert _jobs(db_sessions) == 0


# --- HTTP caching --------------------------------------------------------------------------------


IDENTITY = {"Accept-Encoding": "identity"}


def test_lookups_carry_a_strong_etag_and_answer_if_none_match_with_304(server):
    with httpx.Client(base_url=server.url, headers=IDENTITY) as client:
        first = client.get(LOOKUP)
        etag = first.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert first.headers["cache-control"] == "public, no-cache"
        again = client.get(LOOKUP)
        assert again.headers["etag"] == etag and again.content == first.content
        for validator in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            cached = client.get(LOOKUP, headers={"If-None-Match": validator})
            assert cached.status_code == 304, validator
            assert cached.content == b"" and cached.headers["etag"] == etag
        assert client.get(LOOKUP, headers={"If-None-Match": '"nope"'}).status_code == 200


def test_head_works_on_every_get(server):
    with httpx.Client(base_url=server.url, headers=IDENTITY) as client:
        for path in (
            f"{API}/health",
            f"{API}/ready",
            f"{API}/models",
            LOOKUP,
            f"{API}/index",
            f"{API}/index/schema",
            f"{API}/jobs",
            f"{API}/openapi.json",
        ):
            get, head = client.get(path), client.head(path)
            assert head.status_code == 200, (path, head.status_code)
            assert head.content == b""
            assert head.headers["content-length"] == str(len(get.content)), path
            assert head.headers.get("etag") == get.headers.get("etag")
        assert client.head(f"{API}/models/nobody/nothing").status_code == 404


def test_large_bodies_are_gzipped_with_their_own_etag(server):
    with httpx.Client(base_url=server.url) as client:
        plain = client.get(f"{API}/index", headers=IDENTITY)
        assert "content-encoding" not in plain.headers
        raw = client.build_request("GET", f"{API}/index", headers={"Accept-Encoding": "gzip"})
        zipped = client.send(raw, stream=True)
        body = zipped.read()  # httpx decodes: the decoded bytes are the identity body
        assert zipped.headers["content-encoding"] == "gzip"
        # Streamed the first time (chunked: no Content-Length), so count what came.
        assert zipped.num_bytes_downloaded < len(plain.content) / 3
        assert body == plain.content
        assert zipped.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
        assert zipped.headers["vary"] == "Accept-Encoding"
        # Either validator stands for the same data.
        for etag in (plain.headers["etag"], zipped.headers["etag"]):
            assert client.get(f"{API}/index", headers={"If-None-Match": etag}).status_code == 304
    # Small bodies are sent as they are.
    small = httpx.get(f"{server.url}{API}/health", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    assert gzip.decompress(gzip.compress(plain.content)) == plain.content


def test_the_index_is_dated_by_its_last_change_not_the_clock(server, db_sessions):
    first = httpx.get(f"{server.url}{API}/index", headers=IDENTITY)
    time.sleep(1.1)  # whole seconds: a clock-dated index would differ now
    second = httpx.get(f"{server.url}{API}/index", headers=IDENTITY)
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    generated = json.loads(first.content)["meta"]["generated_at"]
    with db_sessions() as session:
        latest = max(
            session.scalar(select(func.max(column)))
            for column in (ModelRevision.updated_at, SuperWeight.updated_at)
        )
    assert parse_time(generated) == parse_time(latest.isoformat() + ("" if latest.tzinfo else "Z"))
    assert parsedate_to_datetime(first.headers["last-modified"]) == parse_time(generated)


def test_a_write_changes_the_etag_at_once(fresh_reads, db_url, published, db_sessions, report):
    with LiveServer(create_app(db_url)) as live, httpx.Client(base_url=live.url) as client:
        before = {path: client.get(path).headers["etag"] for path in (LOOKUP, f"{API}/index")}
        with transaction(db_sessions) as session:
            service.record_report(
                session,
                model_id="huggyllama/llama-7b",
                revision=SHA_A,
                revision_kind="commit",
                report=report,
            )
        after = {path: client.get(path).headers["etag"] for path in before}
        assert all(after[path] != before[path] for path in before)
        pinned = client.get(LOOKUP, params={"revision": SHA_A})
        assert pinned.headers["cache-control"] == "public, max-age=300"
        assert [r["revision"] for r in pinned.json()["revisions"]] == [SHA_A]
        index = client.get(f"{API}/index").json()
        assert parse_time(index["meta"]["generated_at"]) > parse_time("2024-11-13T00:00:00Z")


# --- guarantees that held, kept held -------------------------------------------------------------


def test_concurrent_duplicate_submissions_over_http_queue_one_job(
    server, token, tmp_path, hf_cache, db_sessions
):
    from concurrent.futures import ThreadPoolExecutor

    install_into_hf_cache(make_checkpoint(tmp_path / "m"), hf_cache, REPO)

    def submit(_):
        return httpx.post(
            f"{server.url}{API}/submissions",
            json={"model": REPO, "revision": "main"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(submit, range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["job"]["id"] for r in responses}) == 1
    assert _jobs(db_sessions) == 1


# --- a hung Hub: submissions answer 503 within their budget, lookups keep their latency ----------

from tests.workers.conftest import fake_hub  # noqa: E402,F401 - the fixture, over real HTTP

HUNG_HUB_SUBMISSIONS = 50
HUB_READ_SECONDS = 2.0
HUB_BUDGET_SECONDS = 3.0
# What a lookup may take while the submissions wait (p99), on a loaded two-core machine.
LOOKUP_P99_BOUND_SECONDS = 1.0


@pytest.fixture
def bounded_hub(monkeypatch):
    """Short Hub bounds for this test, and the defaults back afterwards."""
    from registry.settings import get_settings
    from workers.sources import hub_client

    monkeypatch.setenv("SWREG_HUB_READ_TIMEOUT_SECONDS", str(HUB_READ_SECONDS))
    monkeypatch.setenv("SWREG_HUB_SUBMISSION_BUDGET_SECONDS", str(HUB_BUDGET_SECONDS))
    monkeypatch.setenv("SWREG_HUB_SUBMISSION_CONCURRENCY", "4")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    hub_client.configure(hub_client.HubTimeouts())


def test_a_hung_hub_holds_no_lookup_and_submissions_answer_503_in_their_budget(
    db_url,
    published,
    token,
    fake_hub,  # noqa: F811 - the fixture imported above
    bounded_hub,
):
    from concurrent.futures import ThreadPoolExecutor

    fake_hub.hang()
    with LiveServer(create_app(db_url)) as live:
        httpx.get(f"{live.url}{LOOKUP}", timeout=10).raise_for_status()  # warm the cache

        def submit(i: int) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            response = httpx.post(
                f"{live.url}{API}/submissions",
                json={"model": f"acme/hung-{i}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            return response, time.monotonic() - started

        with ThreadPoolExecutor(HUNG_HUB_SUBMISSIONS) as pool:
            pending = [pool.submit(submit, i) for i in range(HUNG_HUB_SUBMISSIONS)]
            deadline = time.monotonic() + 30
            while fake_hub.waiting < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake_hub.waiting >= 1, "no submission reached the hung Hub"
            latencies = []
            with httpx.Client(base_url=live.url, timeout=10) as client:
                ready = client.get(f"{API}/ready")
                jobs = client.get(f"{API}/jobs")
                while not all(p.done() for p in pending) or len(latencies) < 100:
                    started = time.monotonic()
                    response = client.get(LOOKUP)
                    latencies.append(time.monotonic() - started)
                    assert response.status_code == 200, response.text
            results = [p.result() for p in pending]
    assert ready.status_code == 200, ready.text
    assert jobs.status_code == 200, jobs.text
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"hung Hub: {len(latencies)} lookups, p99 {p99 * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms; slowest submission {max(s for _, s in results):.1f} s"
    )
    assert p99 < LOOKUP_P99_BOUND_SECONDS
    for response, seconds in results:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "hub_unavailable"
        assert int(response.headers["retry-after"]) > 0
        assert seconds < HUB_BUDGET_SECONDS + 5


# --- job documents: no local path or host name for readers without a token ----------------------


OWNER = "gpu-node-7.internal:4242:abc123"  # host:pid:token, as a worker names itself


def test_a_job_read_without_a_token_shows_no_local_path_or_host(server, token, db_sessions):
    from registry.jobs import queue as jobs_queue
    from registry.jobs.models import JobSource

    error = "/srv/models/secret-project: config.json gives num_hidden_layers = 1000000000"
    with jobs_queue.write_transaction(db_sessions) as session:
        job, _ = jobs_queue.enqueue(
            session,
            model_id="local/secret-project",
            revision="sha256:" + "c" * 64,
            source=JobSource.LOCAL,
            local_path="/srv/models/secret-project",
            max_attempts=3,
        )
    with jobs_queue.write_transaction(db_sessions) as session:
        _, lease = jobs_queue.claim(session, owner=OWNER, lease_seconds=600)
    with jobs_queue.write_transaction(db_sessions) as session:
        jobs_queue.report_progress(session, lease, stage="load", done=0, total=4, timings={})
    with jobs_queue.write_transaction(db_sessions) as session:
        # Queued again at once, its error kept; then claimed again: running, with an owner.
        jobs_queue.fail(session, lease, error, backoff_base_seconds=0)
    with jobs_queue.write_transaction(db_sessions) as session:
        jobs_queue.claim(session, owner=OWNER, lease_seconds=600)
    anonymous = [
        httpx.get(f"{server.url}{API}/jobs/{job.id}", timeout=10).json(),
        httpx.get(f"{server.url}{API}/jobs", timeout=10).json()["items"][0],
    ]
    page = httpx.get(f"{server.url}/jobs/{job.id}", timeout=10).text
    for document in anonymous:
        assert document["last_error"] == (
            "<path>: config.json gives num_hidden_layers = 1000000000"
        )
        assert document["lease_owner"] == "worker-abc123"
    assert "/srv/models" not in page and "gpu-node-7" not in page
    whole = httpx.get(
        f"{server.url}{API}/jobs/{job.id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    assert whole["last_error"] == error and whole["lease_owner"].startswith("gpu-node-7.internal")
    wrong = httpx.get(
        f"{server.url}{API}/jobs/{job.id}", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 200 and wrong.json()["lease_owner"] == "worker-abc123"
