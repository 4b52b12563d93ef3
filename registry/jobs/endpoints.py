"""Submit a model (token required) and read jobs (open)."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from registry.auth.dependency import WriteTokenDep
from registry.dependencies import DatabaseDep, SessionDep
from registry.jobs import service
from registry.jobs.models import JobState
from registry.jobs.schemas import JobOut, JobPage, SubmissionIn, SubmissionOut

router = APIRouter(tags=["jobs"])

MAX_PAGE = 500


@router.post(
    "/submissions",
    response_model=SubmissionOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SubmissionOut, "description": "The revision already has a job"},
        401: {"description": "No or invalid API token"},
        404: {"description": "Unknown repository or revision"},
    },
)
def submit(
    body: SubmissionIn, token: WriteTokenDep, database: DatabaseDep, response: Response
) -> SubmissionOut:
    """Queue a Hub model for the workers. The revision is pinned to its commit sha now; a
    revision that is already queued, running or done returns its job (200) instead of a new one.
    Local directories are submitted with the CLI only: a path means nothing to a remote server."""
    submission = service.submit(
        database.sessionmaker,
        body.model,
        revision=body.revision,
        allow_local=False,
        submitted_by=f"token:{token.name}",
    )
    if not submission.created:
        response.status_code = status.HTTP_200_OK
    return SubmissionOut(created=submission.created, job=JobOut.of(submission.job))


@router.get(
    "/jobs/{job_id}", response_model=JobOut, responses={404: {"description": "No such job"}}
)
def get_job(job_id: int, session: SessionDep) -> JobOut:
    """A job's state, attempts, last error, step timings and times."""
    return JobOut.of(service.get_job(session, job_id))


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = service.DEFAULT_LIST_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    """Jobs, newest first, optionally in one state."""
    jobs = service.list_jobs(session, state=state, limit=limit, offset=offset)
    return JobPage(items=[JobOut.of(j) for j in jobs], limit=limit, offset=offset)
