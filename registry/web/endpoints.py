"""The web pages for people, server-rendered from Jinja2 templates (package data, no internet
needed): the model list with search at `/`, a page per model with its revisions, coordinates,
evidence and plots, and the jobs with their live stage and progress.

The pages read the registry through the same services as the API, with the same bounds on the
database work (`Database.read`: 503 when it cannot answer in time), and link to the API's JSON
for everything they show.
"""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from registry import __version__
from registry.bounds import JobCursor, Offset, RowId
from registry.dependencies import DatabaseDep
from registry.errors import InvalidInput, NotFound
from registry.jobs import service as jobs_service
from registry.jobs.eta import job_estimate
from registry.jobs.models import JobState
from registry.jobs.schemas import JobOut
from registry.paths import API_PREFIX
from registry.superweights import service
from registry.web import evidence, overview, snippets
from registry.web.docs import DOCS_PATH, REDOC_PATH
from workers.sources.pinning import MAX_MODEL_ID_CHARS, check_model_id

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
PAGE_SIZE = 50
RECENT_JOBS = 10
# How often the job page asks for the job while it is queued or running (milliseconds).
JOB_POLL_MS = 1500

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(
    api=API_PREFIX,
    docs_url=DOCS_PATH,
    redoc_url=REDOC_PATH,
    version=__version__,
    evidence=evidence,
    overview=overview,
    snippets=snippets,
    fmt=evidence.fmt,
)

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _not_found(request: Request, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "not_found.html", {"message": message}, status_code=404
    )


@router.get("/")
async def index(
    request: Request,
    database: DatabaseDep,
    q: Annotated[str | None, Query(max_length=255)] = None,
    after: Annotated[str | None, Query(max_length=MAX_MODEL_ID_CHARS)] = None,
    offset: Offset = 0,  # links made before the pages paged by key
):
    search = (q or "").strip() or None
    after = after or None
    if after is not None:
        service.check_model_cursor(after)

    def read(session):
        page = service.list_models(
            session, limit=PAGE_SIZE, offset=offset, after=after, search=search
        )
        jobs = [
            JobOut.of(j, public=True) for j in jobs_service.list_jobs(session, limit=RECENT_JOBS)
        ]
        return page, jobs

    page, jobs = await database.read(read)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "q": search or "",
            "models": page.items,
            "total": page.total,
            "next": page.next,
            "paged": after is not None or offset > 0,
            "jobs": jobs,
        },
    )


@router.get("/models/{model_id:path}")
async def model_page(request: Request, database: DatabaseDep, model_id: str):
    def read(session):
        document = service.lookup_document(session, model_id)
        # The bases the registry holds get a link; others are named only.
        known = service.known_models(session, document["lineage"]["base_models"])
        return document, known

    try:
        check_model_id(model_id)
        document, known = await database.read(read)
    except (NotFound, InvalidInput) as exc:
        return _not_found(request, str(exc))
    documents = document["revisions"]
    # Detected revisions (a commit or a content hash) before the published entry.
    documents.sort(key=lambda d: (d["revision_kind"] == "unknown", d["revision"]))
    return templates.TemplateResponse(
        request,
        "model.html",
        {
            "model_id": model_id,
            "revisions": documents,
            "lineage": document["lineage"],
            "known_bases": known,
            "base_url": str(request.base_url),
        },
    )


@router.get("/jobs")
async def jobs_page(
    request: Request,
    database: DatabaseDep,
    state: JobState | None = None,
    after: JobCursor = None,
    offset: Offset = 0,  # links made before the pages paged by key
):
    def read(session):
        jobs, following = jobs_service.jobs_page(
            session, state=state, limit=PAGE_SIZE, offset=offset, after=after
        )
        return [JobOut.of(j, public=True) for j in jobs], following

    jobs, following = await database.read(read)
    return templates.TemplateResponse(
        request,
        "jobs.html",
        {
            "jobs": jobs,
            "state": state.value if state else "",
            "states": [s.value for s in JobState],
            "next": following,
            "paged": after is not None or offset > 0,
        },
    )


@router.get("/jobs/{job_id}")
async def job_page(request: Request, database: DatabaseDep, job_id: RowId):
    try:

        def read(session) -> JobOut:
            job = jobs_service.get_job(session, job_id)
            return JobOut.of(job, eta=job_estimate(session, job), public=True)

        job = await database.read(read)
    except NotFound as exc:
        return _not_found(request, str(exc))
    return templates.TemplateResponse(request, "job.html", {"job": job, "poll_ms": JOB_POLL_MS})
