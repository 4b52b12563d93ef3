"""Submit a model (token required, checked before the body is read) and read jobs (open)."""

from fastapi import APIRouter, Request, Response, status

from registry.api_errors import errors
from registry.auth.dependency import TokenFirstRoute, WriteTokenDep, has_token
from registry.bounds import Limit, Offset, RowId
from registry.dependencies import DatabaseDep
from registry.jobs import service
from registry.jobs.hub_gate import HubGate
from registry.jobs.models import JobState
from registry.jobs.schemas import JobOut, JobPage, SubmissionIn, SubmissionOut
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
            404,
            413,
            422,
            503,
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
    revision that is already queued, running or done returns its job (200) instead of a new one.
    Local directories are submitted with the CLI only: a path means nothing to a remote server."""
    # Pinning may ask the Hub: in the Hub's own threads, within its budget (registry.jobs.hub_gate),
    # holding no database connection and none of the threads lookups use.
    target = await hub_gate(request).run(
        service.resolve_target, body.model, revision=body.revision, allow_local=False
    )
    submission = await database.call(
        lambda: service.submit_target(
            database.sessionmaker, target, submitted_by=f"token:{token.name}"
        )
    )
    if not submission.created:
        response.status_code = status.HTTP_200_OK
    return SubmissionOut(created=submission.created, job=JobOut.of(submission.job))


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(404, e404="No such job"))
async def get_job(job_id: RowId, database: DatabaseDep, request: Request) -> JobOut:
    """A job's state, attempts, last error, step timings and times. Without a token, local
    paths and worker host names are left out."""
    public = not await has_token(request)
    return await database.read(
        lambda session: JobOut.of(service.get_job(session, job_id), public=public)
    )


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    database: DatabaseDep,
    request: Request,
    state: JobState | None = None,
    limit: Limit = service.DEFAULT_LIST_LIMIT,
    offset: Offset = 0,
) -> JobPage:
    """Jobs, newest first, optionally in one state (without a token: no local paths or worker
    host names)."""
    public = not await has_token(request)
    jobs = await database.read(
        lambda session: [
            JobOut.of(j, public=public)
            for j in service.list_jobs(session, state=state, limit=limit, offset=offset)
        ]
    )
    return JobPage(items=jobs, limit=limit, offset=offset)
