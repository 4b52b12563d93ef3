"""What the jobs API reads and returns."""

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.clock import as_utc
from registry.jobs.redaction import public_owner, redact_paths
from registry.jobs.states import MAX_PRIORITY, JobSource, JobState
from workers.contract.errors import InvalidInput
from workers.sources.pinning import (
    MAX_MODEL_ID_CHARS,
    MAX_REVISION_CHARS,
    MODEL_ID_PATTERN,
    REVISION_NAME_PATTERN,
    check_model_id,
    check_revision,
)

if TYPE_CHECKING:  # the database row: the light client parses answers without SQLAlchemy
    from registry.jobs.models import Job
    from registry.time_left import Estimate


class SubmissionIn(BaseModel):
    """The patterns are published in the OpenAPI document; what checks a submission is the
    pinning entry point's own validators (the same rules), which say what is wrong in words."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        max_length=MAX_MODEL_ID_CHARS,
        json_schema_extra={"pattern": MODEL_ID_PATTERN},
        description="A Hub repository id, e.g. HuggingFaceTB/SmolLM2-135M (the Hub's id rules)",
    )
    revision: str | None = Field(
        default=None,
        max_length=MAX_REVISION_CHARS,
        json_schema_extra={"pattern": REVISION_NAME_PATTERN},
        description="A branch, tag or commit sha (git's ref-name rules); pinned to the full "
        "commit sha at submission (default: the default branch)",
    )
    force: bool = Field(
        default=False,
        description="Analyse the revision again even when a job already succeeded on it (after "
        "a detector upgrade): a new job is queued unless one is already pending, and the "
        "recorded result is kept until the new job records its own.",
    )
    priority: int = Field(
        default=0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="Admin tokens only: higher is claimed first (default 0)",
    )

    @field_validator("model")
    @classmethod
    def _hub_id(cls, value: str) -> str:
        try:
            return check_model_id(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("revision")
    @classmethod
    def _ref_name(cls, value: str | None) -> str | None:
        try:
            return None if value is None else check_revision(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None


class Progress(BaseModel):
    done: int = Field(description="Units of the stage's work done")
    total: int = Field(description="Units of the stage's work in all")


class Eta(BaseModel):
    seconds: float = Field(description="Seconds left, from measured rates")
    scope: str = Field(description="job: every stage left; stage: the current stage only")
    basis: str = Field(description="What was measured, in words")
    elapsed_seconds: float | None = Field(
        default=None,
        description="Seconds the job has run so far (its overall progress is elapsed over "
        "elapsed plus seconds left)",
    )


class JobOut(BaseModel):
    id: int
    model_id: str
    revision: str
    requested_revision: str | None
    source: JobSource
    state: JobState
    priority: int = Field(default=0, description="Higher is claimed first (set by an operator)")
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    lease_owner: str | None
    stage: str | None = Field(
        description="What the running attempt is doing: fetch, load, detect, validate, score "
        "(the last one reached once the job has ended; null before a worker started it)"
    )
    progress: Progress | None = Field(description="How far the stage is")
    timings: dict[str, Any] = Field(
        description="Seconds per stage: so far while running; the last attempt's when done"
    )
    fetch: dict[str, Any] = Field(description="Bytes fetched vs the repository's total, and files")
    result_revision_id: int | None
    result_url: str | None = Field(description="Where the recorded coordinates can be read")
    eta: Eta | None = Field(
        default=None,
        description="A running job's time left, from measured rates; null when it is not running "
        "or nothing is measured yet",
    )

    @classmethod
    def of(
        cls,
        job: "Job",
        api_prefix: str = "/api/v1",
        eta: "Estimate | None" = None,
        *,
        public: bool = False,
    ) -> "JobOut":
        """The job's document, with the time it has left while it runs (`eta`); `public`: as a
        reader without a token sees it (no local path, no host name: registry.jobs.redaction)."""
        result_url = None
        if job.state == JobState.SUCCEEDED:
            result_url = f"{api_prefix}/models/{job.model_id}?revision={job.revision}"
        return cls(
            id=job.id,
            model_id=job.model_id,
            revision=job.revision,
            requested_revision=job.requested_revision,
            source=JobSource(job.source),
            state=JobState(job.state),
            priority=job.priority or 0,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            last_error=redact_paths(job.last_error) if public else job.last_error,
            created_at=as_utc(job.created_at),
            started_at=as_utc(job.started_at),
            finished_at=as_utc(job.finished_at),
            not_before=as_utc(job.not_before),
            heartbeat_at=as_utc(job.heartbeat_at),
            lease_expires_at=as_utc(job.lease_expires_at),
            lease_owner=public_owner(job.lease_owner) if public else job.lease_owner,
            stage=job.stage,
            progress=(
                Progress(done=job.progress_done, total=job.progress_total)
                if job.progress_done is not None and job.progress_total is not None
                else None
            ),
            timings=job.timings or {},
            fetch=job.fetch or {},
            result_revision_id=job.result_revision_id,
            result_url=result_url,
            eta=None
            if eta is None
            else Eta(
                seconds=eta.seconds,
                scope=eta.scope,
                basis=eta.basis,
                elapsed_seconds=eta.elapsed,
            ),
        )


class SubmissionOut(BaseModel):
    created: bool = Field(
        description="False when the revision already had a queued or running job (or, "
        "without `force`, a succeeded one)"
    )
    job: JobOut


class JobPage(BaseModel):
    """One page of jobs, newest first. The next page is `?after=` this page's `next`."""

    items: list[JobOut]
    limit: int
    offset: int = Field(description="Deprecated (the `offset` asked for; 0 when none was).")
    next: int | None = Field(
        default=None,
        description="The cursor of the next page (pass it as `after`): the id of this page's "
        "last job; null on the last page.",
    )


class WorkerOut(BaseModel):
    """A worker as last seen: when it last polled the queue or extended a lease."""

    name: str
    first_seen_at: datetime
    seen_at: datetime = Field(description="Its last heartbeat (the database's clock, UTC)")
    seconds_since_seen: float = Field(description="Seconds between its last heartbeat and now")
    job_id: int | None = Field(description="The job it held then; null while the queue was empty")


class WorkerPage(BaseModel):
    items: list[WorkerOut] = Field(description="Most recently seen first")
    silent_after_seconds: float = Field(
        description="Silent this long, a worker is taken for stopped: no worker seen within it "
        "means queued jobs wait"
    )


class HubSearchIn(BaseModel):
    """A Hub search whose models are all queued (admin tokens only)."""

    model_config = ConfigDict(extra="forbid")

    author: str | None = Field(default=None, max_length=96, description="Organisation or user")
    task: str | None = Field(
        default="text-generation", max_length=64, description="The Hub's pipeline tag"
    )
    library: str | None = Field(default=None, max_length=64, description="e.g. transformers")
    base_model: str | None = Field(
        default=None, max_length=MAX_MODEL_ID_CHARS, description="Its fine-tunes"
    )
    sort: Literal["downloads", "likes", "created_at", "last_modified"] | None = Field(
        default="downloads", description="Most first"
    )
    limit: int = Field(default=100, ge=1, le=10_000, description="At most this many models")
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)


class HubSearchOutcome(BaseModel):
    model_id: str
    revision: str | None
    outcome: str = Field(
        description="queued (a new job); queued already, running, succeeded (its job); "
        "analysed (in the registry); refused (reason)"
    )
    job_id: int | None
    reason: str | None
    base_model: str | None = Field(description="The base model its card names")


class HubSearchOut(BaseModel):
    found: int
    queued: int
    items: list[HubSearchOutcome]
