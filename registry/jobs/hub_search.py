"""Whole-Hub submission: queue every model a Hub search lists (by author, task, library, base
model; most downloaded first; up to a limit), each pinned to the commit the listing names.

Deduplicated: a model revision the registry already holds, or whose job is queued, running or
done, is reported and not queued again. The search pages through the Hub's listing as it goes
(nothing is held but the current page), and each model is submitted in its own transaction: a
model the Hub refuses is reported and the others go on.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from registry.errors import InvalidInput, SwregError
from registry.jobs import queue, service
from registry.jobs.models import Job
from registry.superweights.service import find_revision
from workers.sources import pinning
from workers.sources.pinning import Found, HubSort

# The Hub's sort keys swreg offers (most first).
SORTS = ("downloads", "likes", "created_at", "last_modified")
# One search queues at most this many models.
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
DEFAULT_TASK = "text-generation"


@dataclass(frozen=True)
class HubQuery:
    author: str | None = None
    task: str | None = DEFAULT_TASK
    library: str | None = None
    base_model: str | None = None
    sort: HubSort | None = "downloads"
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.sort is not None and self.sort not in SORTS:
            raise InvalidInput(f"invalid sort {self.sort!r}: one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"invalid limit {self.limit}: between 1 and {MAX_LIMIT:,}")
        if not any((self.author, self.library, self.base_model, self.task)):
            raise InvalidInput("a Hub search needs an author, a task, a library or a base model")


@dataclass(frozen=True)
class Outcome:
    model_id: str
    revision: str | None
    # queued (a new job), queued already / running / succeeded (its job), analysed (in the
    # registry), refused (the reason says why)
    outcome: str
    job_id: int | None = None
    reason: str | None = None
    base_model: str | None = None


def search(query: HubQuery) -> Iterator[Found]:
    """The models the Hub lists for `query`, page by page (through the pinning entry point, the
    one place the registry reaches the Hub)."""
    return pinning.search_models(
        author=query.author,
        task=query.task,
        library=query.library,
        base_model=query.base_model,
        sort=query.sort,
        limit=query.limit,
    )


def _known(session: Session, model_id: str, revision: str) -> tuple[str, Job | None] | None:
    if find_revision(session, model_id, revision) is not None:
        return "analysed", None
    job = queue.active_job(session, model_id, revision)
    if job is not None:
        return ("queued already" if job.state == "queued" else job.state), job
    return None


def submit_search(
    factory: sessionmaker[Session],
    query: HubQuery,
    *,
    submitted_by: str,
    quota: bool = False,
    priority: int = 0,
) -> Iterator[Outcome]:
    """Submit each model the search finds (see the module's docstring), as it is found."""
    for found in search(query):
        if found.sha:  # the listing's commit: known without asking the Hub again
            with factory() as session:
                known = _known(session, found.model_id, found.sha)
            if known is not None:
                outcome, job = known
                yield Outcome(
                    found.model_id,
                    found.sha,
                    outcome,
                    job.id if job else None,
                    base_model=found.base_model,
                )
                continue
        try:
            target = service.resolve_target(found.model_id, revision=found.sha, allow_local=False)
            submission = service.submit_target(
                factory, target, submitted_by=submitted_by, quota=quota, priority=priority
            )
        except SwregError as exc:
            if getattr(exc, "http_status", None) == 429:
                raise  # the token's quota: the rest would be refused too
            yield Outcome(
                found.model_id, found.sha, "refused", reason=str(exc), base_model=found.base_model
            )
            continue
        job = submission.job
        outcome = "queued" if submission.created else job.state
        yield Outcome(found.model_id, job.revision, outcome, job.id, base_model=found.base_model)
