"""Settings read from the environment (prefix SWREG_) with pydantic-settings."""

from functools import lru_cache
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    data_dir = Path(user_data_dir("swreg", appauthor=False))
    return f"sqlite:///{data_dir / 'swreg.db'}"


def default_index_cache_dir() -> Path:
    return Path(user_cache_dir("swreg", appauthor=False)) / "index"


def default_run_history_file() -> Path:
    return Path(user_cache_dir("swreg", appauthor=False)) / "runs.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWREG_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    host: str = "127.0.0.1"
    port: int = 8000
    # Server processes of `swreg serve` (see README: one by default, because the machine that
    # serves usually runs the torch worker beside it, and one process already keeps a core busy).
    web_workers: int = Field(default=1, ge=1, le=64)
    # Largest checkpoint (sum of the files a worker fetches) a worker accepts, in bytes.
    max_checkpoint_bytes: int = 64 * 1024**3
    # Bytes a worker's Hub cache may hold (unset: no bound). Least recently used models are
    # evicted after each job; a model whose download alone is larger is refused up front.
    worker_cache_budget_bytes: int | None = Field(default=None, ge=1)
    # How long a claimed job stays leased to its worker without a heartbeat.
    job_lease_seconds: int = 600
    job_max_attempts: int = 3
    device: str = "cpu"
    # After a job verifies its super weights, also run the quantization check on the same
    # weights (a second sweep of the checkpoint, one pass per quantization setting) and store
    # it with the revision (SWREG_QUANTIZE_CHECK=1).
    quantize_check: bool = False

    # --- the database: short limits, so that an outage is an answer, not a hang ---
    # Opening a connection (PostgreSQL: libpq's connect_timeout, whole seconds).
    db_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    # One statement (PostgreSQL: statement_timeout; SQLite: how long to wait for a lock).
    db_statement_timeout_seconds: float = Field(default=10.0, gt=0)
    # Waiting for a free connection of the pool.
    db_pool_timeout_seconds: float = Field(default=3.0, gt=0)
    # The HTTP API's bound on one request's database work, measured in the server (it also
    # covers a server that accepts connections but never answers, e.g. a frozen one): past it
    # the request answers 503.
    api_database_timeout_seconds: float = Field(default=5.0, gt=0)
    # How old the data version a cached answer is checked against may be: a write shows in the
    # API's answers within this time (0: every request reads the version itself).
    api_data_version_max_age_seconds: float = Field(default=0.25, ge=0)
    # Where the server keeps the index bodies it has streamed (one file per data state and
    # encoding; older states are removed): the next request for the same data reads the file.
    index_cache_dir: Path = Field(default_factory=default_index_cache_dir)
    # What earlier local runs of `swreg detect` and `swreg quantize-check` took
    # (workers/commands/run_history.py): how a run estimates the time its later stages will take.
    run_history_file: Path = Field(default_factory=default_run_history_file)
    # Submission quotas per API token (admin tokens and the command line are exempt): jobs
    # queued or running at once, jobs created per minute, and Retry-After when the first is hit.
    quota_queued_jobs: int = Field(default=1000, ge=1)
    quota_submissions_per_minute: int = Field(default=120, ge=1)
    quota_retry_after_seconds: int = Field(default=60, ge=1)
    # Retry-After of a 503 (the database or the Hub is unavailable), in seconds.
    retry_after_seconds: int = Field(default=5, ge=1)

    # --- the Hub: every call bounded (workers/sources/hub_client.py) ---
    # Opening a connection to the Hub.
    hub_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # No bytes from the Hub for this long (while waiting for an answer or in the middle of a
    # file): the call fails as "Hub unavailable" (a worker hands the job back to the queue).
    hub_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Pinning a revision at submission (HTTP): at most this many Hub calls at once, each
    # submission answered within this many seconds (503 hub_unavailable past it), in threads of
    # their own, so that a slow Hub never holds a thread or a connection that lookups need.
    hub_submission_concurrency: int = Field(default=4, ge=1, le=64)
    hub_submission_budget_seconds: float = Field(default=15.0, gt=0)

    # --- what a worker reads before it builds anything (workers/science/preflight.py) ---
    # Largest config.json, tokenizer file and shard index, checked from the Hub listing or the
    # file size before anything is read.
    max_config_bytes: int = Field(default=1024**2, gt=0)
    max_tokenizer_bytes: int = Field(default=64 * 1024**2, gt=0)
    max_shard_index_bytes: int = Field(default=16 * 1024**2, gt=0)
    # Largest model by parameter count that a worker builds (checked from config.json and the
    # tensor headers before anything is built).
    max_parameters: int = Field(default=80 * 10**9, gt=0)
    # What the child process each analysis runs in may allocate (RLIMIT_DATA), in bytes; 0:
    # three quarters of this machine's memory.
    worker_memory_limit_bytes: int = Field(default=0, ge=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
