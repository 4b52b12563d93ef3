"""Database fixtures for every test: each runs on SQLite (a file in tmp_path) and on PostgreSQL.

PostgreSQL comes from SWREG_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).
When it is unset or unreachable the PostgreSQL cases are skipped with the reason, except under
SWREG_REQUIRE_POSTGRES=1 (CI), where they fail. Every PostgreSQL test gets its own schema (set as
the connection's search_path), dropped afterwards, so runs never see each other's tables, even
when several suites share the database.

Fixtures: `empty_db_url` (no tables), `db_url` (migrated to head), `db_engine`, `db_sessions`
(a sessionmaker), `cli_env` (SWREG_DATABASE_URL pointing at `db_url` for CLI commands),
`hf_cache` (an empty offline Hugging Face cache), `hub_down` / `hub_failing` (that cache, with
offline mode off and the Hub at a closed loopback port / at a loopback server answering 503),
`fresh_reads` (the API checks the data version on every request: a write shows at once); models,
shared by the workers', the registry's and the public package's tests: `planted_models` (tiny
planted models, built once per session), `planted_reports` (their analyses by the streamed sweep,
once per session), `smollm2` (the real SmolLM2-135M-Instruct copy, converted once into the user
cache) and `smollm2_detect` (one `swreg detect --json --plot` run on it, shared by the session).
"""

import http.server
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import constants
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from registry import migrate
from registry.database import make_engine, make_sessionmaker
from registry.settings import get_settings
from tests.helpers import TINY_EVAL_TOKENS

POSTGRES_URL_ENV = "SWREG_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "SWREG_REQUIRE_POSTGRES"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(
            f"PostgreSQL is required ({REQUIRE_POSTGRES_ENV}=1) but {reason}", pytrace=False
        )
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        _unavailable(f"{POSTGRES_URL_ENV} is not set")
    engine = create_engine(url, connect_args={"connect_timeout": 5}, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any reason the server cannot be used
        engine.dispose()
        _unavailable(f"{POSTGRES_URL_ENV} is unreachable: {str(exc).splitlines()[0]}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_schema(postgres_admin: Engine) -> Iterator[Callable[[], str]]:
    """Makes a fresh schema and returns a URL whose connections use only that schema."""
    run = uuid.uuid4().hex[:8]
    created: list[str] = []
    numbers = itertools.count()

    def make() -> str:
        name = f"swreg_t_{run}_{next(numbers)}"
        with postgres_admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        created.append(name)
        url = make_url(os.environ[POSTGRES_URL_ENV]).update_query_dict(
            {"options": f"-csearch_path={name}"}
        )
        return url.render_as_string(hide_password=False)

    make.drop_all = lambda: _drop(postgres_admin, created)  # type: ignore[attr-defined]
    yield make
    _drop(postgres_admin, created)


def _drop(admin: Engine, schemas: list[str]) -> None:
    with admin.connect() as connection:
        while schemas:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schemas.pop()}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database (no tables), SQLite or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'swreg.db'}"
        return
    factory = request.getfixturevalue("postgres_schema")
    yield factory()
    factory.drop_all()  # this test's schema; keeps the shared database small


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A database migrated to the newest schema."""
    migrate.upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_sessions(db_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(db_engine)


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point swreg's settings (and subprocesses) at `db_url`."""
    monkeypatch.setenv("SWREG_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """An empty Hugging Face cache, offline (there is no Hub to reach here), for this process
    (huggingface_hub reads its constants at call time) and for subprocesses (environment)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def hub_down(hf_cache, monkeypatch: pytest.MonkeyPatch):
    """The Hub at a loopback port nobody listens on, with offline mode off."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    return hf_cache


class _FailingHub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the standard library's name
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *_args):
        pass


@pytest.fixture
def hub_failing(hf_cache, monkeypatch: pytest.MonkeyPatch):
    """A Hub on a loopback port that answers every request with 503."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield hf_cache
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_reads(monkeypatch: pytest.MonkeyPatch):
    """The API reads the data version on every request (no batching window)."""
    monkeypatch.setenv("SWREG_API_DATA_VERSION_MAX_AGE_SECONDS", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --- the real SmolLM2 ------------------------------------------------------------------------


# --- models ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def planted_models(tmp_path_factory):
    """model_type -> PlantedModel, built on first use."""
    from workers.fixtures.planted import build_planted_model

    built = {}

    def get(model_type: str):
        if model_type not in built:
            built[model_type] = build_planted_model(
                model_type, tmp_path_factory.mktemp(f"planted-{model_type}")
            )
        return built[model_type]

    return get


@pytest.fixture(scope="session")
def planted_reports(planted_models):
    """model_type -> (PlantedModel, its report as `swreg detect --json` prints it), analysed
    on first use with TINY_EVAL_TOKENS of the evaluation text."""
    from workers.science.pipeline.steps import AnalysisOptions
    from workers.science.pipeline.sweep import analyse

    cache = {}

    def get(model_type: str):
        if model_type not in cache:
            planted = planted_models(model_type)
            cache[model_type] = (
                planted,
                analyse(planted.path, AnalysisOptions(eval_tokens=TINY_EVAL_TOKENS)).as_json_dict(),
            )
        return cache[model_type]

    return get


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct in HF format (converted once into the user cache)."""
    from workers.fixtures.smollm2 import smollm2_dir

    return smollm2_dir()


@dataclass(frozen=True)
class DetectRun:
    report: dict
    stderr: str
    plot: Path


# `swreg detect` on SmolLM2 takes about a minute on two cores: one run serves the session.
SMOLLM2_DETECT_TIMEOUT_S = 1200


@pytest.fixture(scope="session")
def smollm2_detect(smollm2, tmp_path_factory) -> DetectRun:
    """`swreg detect SMOLLM2 --json --plot FILE`, run once as a user runs it (a subprocess
    whose stderr is not a terminal, so progress comes as plain lines)."""
    plot = tmp_path_factory.mktemp("smollm2-detect") / "smollm2.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry.cli",
            "detect",
            str(smollm2),
            "--json",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=SMOLLM2_DETECT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return DetectRun(report=json.loads(result.stdout), stderr=result.stderr, plot=plot)


@pytest.fixture(scope="session", autouse=True)
def run_history_file(tmp_path_factory) -> Iterator[Path]:
    """What local `swreg detect` and `quantize-check` runs took (their ETA's history) in a file
    of this session, never the user's: set before any session fixture runs a command."""
    path = tmp_path_factory.mktemp("run-history") / "runs.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWREG_RUN_HISTORY_FILE", str(path))
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def index_cache_dir(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The served index's files in a folder of this test (never the user's cache), for this
    process and for servers it starts."""
    folder = tmp_path_factory.mktemp("index-cache")
    monkeypatch.setenv("SWREG_INDEX_CACHE_DIR", str(folder))
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()
