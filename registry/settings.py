"""Settings read from the environment (prefix SWREG_) with pydantic-settings."""

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    data_dir = Path(user_data_dir("swreg", appauthor=False))
    return f"sqlite:///{data_dir / 'swreg.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWREG_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    host: str = "127.0.0.1"
    port: int = 8000
    # Largest checkpoint (sum of the files a worker fetches) a worker accepts, in bytes.
    max_checkpoint_bytes: int = 64 * 1024**3
    # How long a claimed job stays leased to its worker without a heartbeat.
    job_lease_seconds: int = 600
    job_max_attempts: int = 3
    device: str = "cpu"
    # After a job verifies its super weights, also run the quantization check on the same
    # weights (a second sweep of the checkpoint, one pass per quantization setting) and store
    # it with the revision (SWREG_QUANTIZE_CHECK=1).
    quantize_check: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
