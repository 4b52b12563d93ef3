"""A job's vocabulary without its table: its states and sources, and how many jobs a listing
shows by default. The command line's options name them, and `swreg jobs -h` must not import
SQLAlchemy to show them (registry/jobs/models.py re-exports the enums)."""

from enum import StrEnum

DEFAULT_LIST_LIMIT = 50


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobSource(StrEnum):
    HUB = "hub"
    LOCAL = "local"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED})

# Operator priorities (`swreg submit --priority`, an admin token's submission): higher is
# claimed first; a small range is plenty to order a few classes of work.
MAX_PRIORITY = 1000
