"""Submissions: pin the model's revision, then queue it once.

The revision is resolved before the transaction (it may ask the Hub over the network) and the
job is inserted inside a write transaction, guarded by the unique index on active jobs.
"""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.database import write_transaction
from registry.errors import InvalidInput, NotFound
from registry.jobs import queue, quotas
from registry.jobs.models import Job, JobSource, JobState
from registry.jobs.states import DEFAULT_LIST_LIMIT
from registry.settings import get_settings
from registry.superweights.service import check_model_id, revisions_at

LOCAL_MODEL_ID_PREFIX = "local/"


@dataclass(frozen=True)
class Target:
    """What a submission names, pinned: a model id and an exact revision."""

    model_id: str
    revision: str
    source: JobSource
    requested_revision: str | None = None
    local_path: str | None = None


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool


def resolve_target(
    model: str,
    *,
    revision: str | None = None,
    model_id: str | None = None,
    allow_local: bool = True,
) -> Target:
    """Pin what a user submitted: a Hub id (+ branch, tag or sha) or a local directory."""
    # Imported here: huggingface_hub and safetensors are only needed when something is pinned.
    from workers.sources import pinning

    folder = pinning.local_or_hub(model, revision) if allow_local else None
    if folder is not None:
        directory = folder.resolve()
        weights = pinning.hash_local_weights(directory)
        return Target(
            model_id=check_model_id(model_id or LOCAL_MODEL_ID_PREFIX + directory.name),
            revision=pinning.local_revision(weights),
            source=JobSource.LOCAL,
            local_path=str(directory),
        )
    if allow_local:
        _check_hub_id(model)
    if model_id is not None and model_id != model:
        raise InvalidInput(
            f"--model-id applies to local folders; {model} is read as a Hub model (no folder "
            "of that name here), whose id is its repository's"
        )
    check_model_id(model)
    settings = get_settings()
    pinning.configure_hub(
        connect_seconds=settings.hub_connect_timeout_seconds,
        read_seconds=settings.hub_read_timeout_seconds,
    )
    sha = pinning.resolve_revision(model, revision)
    return Target(model_id=model, revision=sha, source=JobSource.HUB, requested_revision=revision)


def _check_hub_id(model: str) -> None:
    """A name that is no folder here is a Hub id: say both when it is not one either."""
    try:
        check_model_id(model)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc}; no folder of that name here either") from None


def submit_target(
    factory: sessionmaker[Session],
    target: Target,
    *,
    submitted_by: str | None = None,
    force: bool = False,
    quota: bool = False,
    priority: int = 0,
) -> Submission:
    """Queue `target` (or return its job; with `force`, a new analysis of a revision already
    done). With `quota`, `submitted_by`'s limits apply to a job that would be created
    (registry.jobs.quotas); an existing job is returned regardless."""
    with write_transaction(factory) as session:
        existing = queue.pending_job if force else queue.active_job
        if quota and existing(session, target.model_id, target.revision) is None:
            # quotas are per submitter: an anonymous submission (the CLI) has none
            if submitted_by is not None:
                quotas.check(session, submitted_by, queue.database_now(session))
        job, created = queue.enqueue(
            session,
            model_id=target.model_id,
            revision=target.revision,
            source=target.source,
            requested_revision=target.requested_revision,
            local_path=target.local_path,
            max_attempts=get_settings().job_max_attempts,
            submitted_by=submitted_by,
            force=force,
            priority=priority,
        )
    return Submission(job=job, created=created)


def submit(
    factory: sessionmaker[Session],
    model: str,
    *,
    revision: str | None = None,
    model_id: str | None = None,
    allow_local: bool = True,
    submitted_by: str | None = None,
    force: bool = False,
    priority: int = 0,
) -> Submission:
    target = resolve_target(model, revision=revision, model_id=model_id, allow_local=allow_local)
    return submit_target(factory, target, submitted_by=submitted_by, force=force, priority=priority)


def analysed_as(session: Session, target: Target) -> list[str]:
    """The model ids under which the registry already holds a local folder's weights (a stored
    revision at its `sha256:` content hash), so that a submission can say so instead of
    analysing the same weights again. Empty for a Hub model, and for a folder submitted under
    an id that already has a job for these weights (the submission answers with that job)."""
    if target.source != JobSource.LOCAL:
        return []
    if queue.active_job(session, target.model_id, target.revision) is not None:
        return []
    try:
        return [r.model_id for r in revisions_at(session, target.revision)]
    except NotFound:
        return []


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(
    session: Session,
    *,
    state: JobState | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
    offset: int = 0,
    after: int | None = None,
) -> list[Job]:
    """Jobs, newest first (by id): those older than job `after` (a page's `next`), skipping
    `offset` more (deprecated)."""
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if state is not None:
        query = query.where(Job.state == state)
    if after is not None:
        query = query.where(Job.id < after)
    return list(session.scalars(query))


def jobs_page(
    session: Session,
    *,
    state: JobState | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
    offset: int = 0,
    after: int | None = None,
) -> tuple[list[Job], int | None]:
    """One page of `list_jobs` and the cursor of the next (its last job's id; None on the
    last page)."""
    jobs = list_jobs(session, state=state, limit=limit + 1, offset=offset, after=after)
    if len(jobs) > limit:
        return jobs[:limit], jobs[limit - 1].id
    return jobs, None
