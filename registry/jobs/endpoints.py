"""Submit a model (token required, checked before the body is read) and read jobs (open)."""

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from registry.api_errors import errors
from registry.auth.dependency import TokenFirstRoute, WriteTokenDep, has_token
from registry.bounds import DeprecatedOffset, JobCursor, Limit, RowId
from registry.clock import as_utc
from registry.dependencies import DatabaseDep
from registry.errors import Forbidden
from registry.jobs import hub_search, service, workers
from registry.jobs.eta import job_estimate
from registry.jobs.hub_gate import HubGate
from registry.jobs.hub_search import HubQuery
from registry.jobs.models import JobState
from registry.jobs.queue import database_now
from registry.jobs.schemas import (
    HubSearchIn,
    HubSearchOut,
    HubSearchOutcome,
    JobOut,
    JobPage,
    SubmissionIn,
    SubmissionOut,
    WorkerOut,
    WorkerPage,
)
from registry.settings import get_settings

router = APIRouter(tags=["jobs"])


def hub_gate(request: Request) -> HubGate:
    """The app's gate for Hub calls at submission, made on first use."""
    state = request.app.state
    if getattr(state, "hub_gate", None) is None:
        settings = get_settings()
        state.hub_gate = HubGate(
            concurrency=settings.hub_submission_concurrency,
            budget=settings.hub_submission_budget_seconds,
        )
    return state.hub_gate


submissions = APIRouter(tags=["jobs"], route_class=TokenFirstRoute)


@submissions.post(
    "/submissions",
    response_model=SubmissionOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SubmissionOut, "description": "The revision already has a job"},
        **errors(
            400,
            401,
            403,
            404,
            413,
            422,
            429,
            503,
            e403="A priority needs an admin token",
            e404="Unknown repository or revision",
            e422="Invalid input, or a repository or revision the Hub or its cache refuses",
            e503="The database or the Hub is unavailable: retry after Retry-After seconds",
        ),
    },
)
async def submit(
    body: SubmissionIn,
    token: WriteTokenDep,
    database: DatabaseDep,
    request: Request,
    response: Response,
) -> SubmissionOut:
    """Queue a Hub model for the workers. The revision is pinned to its commit sha now; a
    revision that is already queued, running or done returns its job (200) instead of a new one;
    with `force`, a done revision is queued again (its result kept until the new one lands).
    Local directories are submitted with the CLI only: a path means nothing to a remote server."""
    if body.priority and not token.admin:
        raise Forbidden("a priority needs an admin token (swreg token create --admin)")
    # Pinning may ask the Hub: in the Hub's own threads, within its budget (registry.jobs.hub_gate),
    # holding no database connection and none of the threads lookups use.
    target = await hub_gate(request).run(
        service.resolve_target, body.model, revision=body.revision, allow_local=False
    )
    submission = await database.call(
        lambda: service.submit_target(
            database.sessionmaker,
            target,
            submitted_by=f"token:{token.name}",
            force=body.force,
            # Admin tokens are exempt from the per-token quotas.
            quota=not token.admin,
            priority=body.priority,
        )
    )
    if not submission.created:
        response.status_code = status.HTTP_200_OK
    return SubmissionOut(created=submission.created, job=JobOut.of(submission.job))


@submissions.post(
    "/submissions/search",
    response_model=HubSearchOut,
    responses=errors(
        400,
        401,
        403,
        413,
        422,
        503,
        e403="Whole-Hub submission needs an admin token",
        e503="The database or the Hub is unavailable: retry after Retry-After seconds",
    ),
)
async def submit_search(
    body: HubSearchIn, token: WriteTokenDep, database: DatabaseDep
) -> HubSearchOut:
    """Queue every model a Hub search lists (admin tokens only), each pinned to the commit the
    listing names; what is already analysed or queued is reported, not queued again."""
    if not token.admin:
        raise Forbidden("whole-Hub submission needs an admin token (swreg token create --admin)")
    query = HubQuery(
        author=body.author,
        task=body.task,
        library=body.library,
        base_model=body.base_model,
        sort=body.sort,
        limit=body.limit,
    )
    # Pages of the Hub's listing and one pin per model: in a worker thread, outside the
    # database's time budget (each submission's own transaction is short).
    outcomes = await run_in_threadpool(
        lambda: list(
            hub_search.submit_search(
                database.sessionmaker,
                query,
                submitted_by=f"token:{token.name}",
                priority=body.priority,
            )
        )
    )
    items = [HubSearchOutcome(**vars(o)) for o in outcomes]
    return HubSearchOut(
        found=len(items), queued=sum(i.outcome == "queued" for i in items), items=items
    )


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(404, e404="No such job"))
async def get_job(job_id: RowId, database: DatabaseDep, request: Request) -> JobOut:
    """A job's state, attempts, last error, step timings and times; while it runs, the time it
    has left from measured rates (`eta`). Without a token, local paths and worker host names are
    left out."""
    public = not await has_token(request)

    def read(session) -> JobOut:
        job = service.get_job(session, job_id)
        return JobOut.of(job, eta=job_estimate(session, job), public=public)

    return await database.read(read)


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    database: DatabaseDep,
    request: Request,
    state: JobState | None = None,
    limit: Limit = service.DEFAULT_LIST_LIMIT,
    after: JobCursor = None,
    offset: DeprecatedOffset = 0,
) -> JobPage:
    """Jobs, newest first, optionally in one state (without a token: no local paths or worker
    host names). Paginated by key: the next page is `?after=` the page's `next` (null on the
    last page), with the same `state`."""
    public = not await has_token(request)

    def read(session) -> JobPage:
        jobs, following = service.jobs_page(
            session, state=state, limit=limit, offset=offset, after=after
        )
        items = [JobOut.of(j, public=public) for j in jobs]
        return JobPage(items=items, limit=limit, offset=offset, next=following)

    return await database.read(read)


@router.get("/workers", response_model=WorkerPage)
async def list_workers(database: DatabaseDep) -> WorkerPage:
    """The workers seen, most recently first, each with its last heartbeat and the job it held:
    whether any worker is alive to take a queued job."""

    def read(session) -> WorkerPage:
        now = database_now(session)
        return WorkerPage(
            items=[
                WorkerOut(
                    name=w.name,
                    first_seen_at=as_utc(w.first_seen_at),
                    seen_at=as_utc(w.seen_at),
                    seconds_since_seen=round((now - as_utc(w.seen_at)).total_seconds(), 1),
                    job_id=w.job_id,
                )
                for w in workers.seen(session)
            ],
            silent_after_seconds=workers.SILENT_AFTER_SECONDS,
        )

    return await database.read(read)
