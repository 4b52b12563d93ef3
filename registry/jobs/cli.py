"""`swreg submit` and `swreg jobs` (`swreg worker` is the worker's own command).

The CLI talks to the registry's database directly (SWREG_DATABASE_URL), like every other
command: whoever can reach the database needs no API token.
"""

import json
import time

import click

from registry.console import StageProgress
from registry.database import transaction
from registry.errors import SwregError
from registry.jobs import service
from registry.jobs.models import JobState
from registry.jobs.schemas import JobOut
from registry.migrate import open_registry

WAIT_POLL_SECONDS = 2.0
STEP_ORDER = ("fetch", "analyse", "load", "detect", "validate", "score", "total")


class JobFailed(SwregError):
    exit_code = 3


def _dump(document) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _job_line(job: JobOut) -> str:
    error = f"  {job.last_error}" if job.last_error and job.state != JobState.SUCCEEDED else ""
    return (
        f"{job.id:>6}  {job.state.value:<9}  {job.attempts}/{job.max_attempts}  "
        f"{job.model_id}@{job.revision[:19]}{error}"
    )


def _show(job: JobOut) -> list[str]:
    lines = [
        f"job {job.id}: {job.state.value}",
        f"  model     {job.model_id}",
        f"  revision  {job.revision}"
        + (f" (from {job.requested_revision})" if job.requested_revision else ""),
        f"  source    {job.source.value}",
        f"  attempts  {job.attempts}/{job.max_attempts}",
        f"  created   {job.created_at:%Y-%m-%d %H:%M:%S}Z",
    ]
    if job.started_at:
        lines.append(f"  started   {job.started_at:%Y-%m-%d %H:%M:%S}Z")
    if job.finished_at:
        lines.append(f"  finished  {job.finished_at:%Y-%m-%d %H:%M:%S}Z")
    if job.state == JobState.RUNNING and job.lease_owner:
        lines.append(
            f"  worker    {job.lease_owner} (lease until {job.lease_expires_at:%H:%M:%S}Z)"
        )
    if job.state == JobState.QUEUED and job.attempts and job.not_before:
        lines.append(f"  retry at  {job.not_before:%Y-%m-%d %H:%M:%S}Z")
    if job.last_error:
        lines.append(f"  error     {job.last_error}")
    if job.timings:
        # In pipeline order (PostgreSQL's JSONB does not keep key order).
        order = {step: i for i, step in enumerate(STEP_ORDER)}
        ordered = sorted(job.timings.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in ordered)
        lines.append(f"  timings   {steps}")
    if job.fetch:
        lines.append(
            f"  fetched   {job.fetch.get('downloaded_bytes', 0):,} bytes downloaded, "
            f"{job.fetch.get('selected_bytes', 0):,} read, "
            f"{job.fetch.get('repo_bytes', 0):,} in the repository"
        )
    if job.result_url:
        lines.append(
            f"  result    {job.result_url}  (swreg lookup {job.model_id} --revision {job.revision})"
        )
    return lines


@click.command()
@click.argument("model")
@click.option(
    "--revision", help="Branch, tag or commit sha of a Hub model (pinned to its sha now)."
)
@click.option("--model-id", help="Registry id for a local directory (default: local/<dirname>).")
@click.option("--wait", is_flag=True, help="Wait until a worker has finished the job.")
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="With --wait: give up after this long."
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def submit(
    model: str,
    revision: str | None,
    model_id: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Queue MODEL (a Hub id or a local directory) for the workers."""
    factory = open_registry()
    submission = service.submit(
        factory, model, revision=revision, model_id=model_id, submitted_by="cli"
    )
    job = JobOut.of(submission.job)
    if not as_json:
        verb = "queued" if submission.created else f"already {job.state.value}"
        click.echo(f"{verb}: job {job.id}, {job.model_id}@{job.revision}")
    if wait and job.state not in (JobState.SUCCEEDED, JobState.FAILED):
        job = _wait(factory, job.id, timeout)
    if as_json:
        click.echo(_dump(job.model_dump(mode="json")))
    elif wait:
        for line in _show(job):
            click.echo(line)
    if job.state == JobState.FAILED:
        raise JobFailed(f"job {job.id} failed: {job.last_error}")


def _wait(factory, job_id: int, timeout: float | None) -> JobOut:
    """Follow the job until it ends, showing its state and its stage's progress on stderr (a
    bar on a terminal, plain lines otherwise)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    state = None
    with StageProgress(one_bar=True, prefix=f"job {job_id}: ") as display:
        while True:
            with transaction(factory) as session:
                job = JobOut.of(service.get_job(session, job_id))
            if job.stage and job.progress:
                display(job.stage, job.progress.done, job.progress.total)
            if job.state != state:
                state = job.state
                worker = f" on {job.lease_owner}" if job.lease_owner else ""
                display.note(f"job {job_id}: {state.value}{worker}")
            if job.state in (JobState.SUCCEEDED, JobState.FAILED):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise SwregError(f"job {job_id} is still {job.state.value} after {timeout:g} s")
            time.sleep(WAIT_POLL_SECONDS)


@click.group(invoke_without_command=True)
@click.option(
    "--state", type=click.Choice([s.value for s in JobState]), help="Only jobs in this state."
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=service.DEFAULT_LIST_LIMIT, show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.pass_context
def jobs(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first (`swreg jobs show ID` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    with transaction(open_registry()) as session:
        items = [
            JobOut.of(j)
            for j in service.list_jobs(
                session, state=JobState(state) if state else None, limit=limit
            )
        ]
    if as_json:
        click.echo(_dump([j.model_dump(mode="json") for j in items]))
        return
    for job in items:
        click.echo(_job_line(job))


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def show(job_id: int, as_json: bool) -> None:
    """One job: state, attempts, error, timings, times."""
    with transaction(open_registry()) as session:
        job = JobOut.of(service.get_job(session, job_id))
    if as_json:
        click.echo(_dump(job.model_dump(mode="json")))
        return
    for line in _show(job):
        click.echo(line)
