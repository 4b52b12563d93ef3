"""Where the registry's shipped files are: the Alembic migrations (the repository's
`migrations/`, installed as package data of `registry`)."""

from importlib.resources import files
from pathlib import Path

MIGRATIONS_DIR = Path(str(files("registry") / "migrations"))
