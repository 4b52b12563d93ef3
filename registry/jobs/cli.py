"""`swreg submit` and `swreg jobs` (`swreg worker` is the worker's own command).

The CLI talks to the registry's database directly (SWREG_DATABASE_URL), like every other
command: whoever can reach the database needs no API token. The database, the service and the
schemas are imported inside the commands, so that `swreg submit -h` loads none of them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from registry.console import StageProgress, table
from registry.errors import SwregError
from registry.jobs.states import DEFAULT_LIST_LIMIT, MAX_PRIORITY, TERMINAL_STATES, JobState
from registry.readers import api_option, reader

if TYPE_CHECKING:
    from registry.jobs.schemas import JobOut

WAIT_POLL_SECONDS = 2.0
STEP_ORDER = ("fetch", "analyse", "load", "detect", "validate", "score", "total")


class JobFailed(SwregError):
    """`submit --wait` followed a job to its failure: the submission worked, the job did not."""

    exit_code = 3


def _dump(document) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str)


JOB_COLUMNS = ["id", "state", "attempts", "model@revision", "error"]
# Enough of a revision to tell jobs apart in a listing (`jobs show` prints all of it).
SHOWN_REVISION_CHARS = 19


def _job_row(job: JobOut) -> list[str]:
    error = job.last_error if job.last_error and job.state != JobState.SUCCEEDED else ""
    return [
        str(job.id),
        job.state.value,
        f"{job.attempts}/{job.max_attempts}",
        f"{job.model_id}@{job.revision[:SHOWN_REVISION_CHARS]}",
        error or "",
    ]


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
    if job.eta is not None:
        lines.append(f"  time left about {job.eta.seconds:.0f} s ({job.eta.basis})")
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


def _submit_search(author, task, library, base_model, sort, limit, priority, as_json) -> None:
    from registry.jobs.hub_search import HubQuery, submit_search
    from registry.migrate import open_registry

    query = HubQuery(
        author=author,
        task=task or None,
        library=library,
        base_model=base_model,
        sort=sort,
        limit=limit,
    )
    outcomes = []
    for outcome in submit_search(open_registry(), query, submitted_by="cli", priority=priority):
        outcomes.append(outcome)
        if not as_json:
            job = f"job {outcome.job_id}" if outcome.job_id else ""
            why = f": {outcome.reason}" if outcome.reason else ""
            where = f"{outcome.model_id}@{outcome.revision or '?'}"
            click.echo(f"{outcome.outcome:<15} {where} {job}{why}".rstrip())
    if as_json:
        click.echo(_dump([vars(o) for o in outcomes]))
        return
    queued = sum(o.outcome == "queued" for o in outcomes)
    click.echo(f"{len(outcomes)} models found, {queued} queued", err=True)


@click.command()
@click.argument("model", required=False)
@click.option(
    "--revision", help="Branch, tag or commit sha of a Hub model (pinned to its sha now)."
)
@click.option(
    "--hub-search",
    is_flag=True,
    help="Instead of MODEL, queue every model a Hub search lists (--author, --task, --library, "
    "--base-model, --sort, --limit), skipping what is analysed or queued.",
)
@click.option("--author", help="With --hub-search: the organisation or user.")
@click.option(
    "--task",
    default="text-generation",
    show_default=True,
    help="With --hub-search: the Hub's pipeline tag.",
)
@click.option("--library", help="With --hub-search: e.g. transformers.")
@click.option("--base-model", help="With --hub-search: the fine-tunes of this model.")
@click.option(
    "--sort",
    type=click.Choice(["downloads", "likes", "created_at", "last_modified"]),
    default="downloads",
    show_default=True,
    help="With --hub-search: most first.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="With --hub-search: at most this many models.",
)
@click.option("--model-id", help="Registry id for a local folder (default: local/<dirname>).")
@click.option(
    "--force",
    is_flag=True,
    help="Analyse it again: queue a new job even when the revision (or a folder's weights, "
    "under any id) is already analysed; its result stays until the new one is recorded.",
)
@click.option(
    "--priority",
    type=click.IntRange(-MAX_PRIORITY, MAX_PRIORITY),
    default=0,
    show_default=True,
    help="Higher is claimed first (the operator's word; submitters otherwise take turns).",
)
@click.option("--wait", is_flag=True, help="Wait until a worker has finished the job.")
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="With --wait: give up after this long."
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def submit(
    model: str | None,
    revision: str | None,
    hub_search: bool,
    author: str | None,
    task: str,
    library: str | None,
    base_model: str | None,
    sort: str,
    limit: int,
    model_id: str | None,
    force: bool,
    priority: int,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Queue MODEL (a Hub id or a local directory) for the workers.

    MODEL is a local folder when it is written as a path (./, ../, /, ~) or when a folder of
    that name exists here; anything else is a Hub id. A folder is pinned by the sha256 content
    hash of its weights: when the registry already holds those weights, under any model id, the
    command says so and queues nothing. A revision already analysed answers with its job;
    --force queues a new analysis (after a detector upgrade), the recorded result kept until
    the new one is recorded.

    \b
    Examples:
      swreg submit HuggingFaceTB/SmolLM2-135M-Instruct --revision main --wait
      swreg submit ./my-checkpoint --model-id me/my-model
      swreg submit ./my-checkpoint --json
      swreg submit HuggingFaceTB/SmolLM2-135M-Instruct --force   # analyse it again
      swreg submit --hub-search --author HuggingFaceTB --limit 20
      swreg submit --hub-search --base-model meta-llama/Llama-3.2-1B --sort downloads
    """
    from registry.database import transaction
    from registry.jobs import service
    from registry.jobs.schemas import JobOut
    from registry.migrate import open_registry

    if hub_search:
        if model or revision or model_id:
            raise click.UsageError("--hub-search takes no MODEL, --revision or --model-id")
        _submit_search(author, task, library, base_model, sort, limit, priority, as_json)
        return
    if model is None:
        raise click.UsageError("missing MODEL (or --hub-search)")
    factory = open_registry()
    target = service.resolve_target(model, revision=revision, model_id=model_id)
    if not force:
        with transaction(factory) as session:
            known = service.analysed_as(session, target)
        if known:
            _report_known(model, target.revision, known, as_json)
            return
    submission = service.submit_target(
        factory, target, submitted_by="cli", force=force, priority=priority
    )
    job = JobOut.of(submission.job)
    if not as_json:
        verb = "queued" if submission.created else f"already {job.state.value}"
        hint = ""
        if job.state == JobState.SUCCEEDED and not submission.created:
            hint = " (--force to analyse it again)"
        click.echo(f"{verb}: job {job.id}, {job.model_id}@{job.revision}{hint}")
    if wait and job.state not in TERMINAL_STATES:
        job = _wait(factory, job.id, timeout)
    if as_json:
        click.echo(_dump(job.model_dump(mode="json")))
    elif wait:
        for line in _show(job):
            click.echo(line)
    if job.state == JobState.FAILED:
        raise JobFailed(f"job {job.id} failed: {job.last_error}")


def _report_known(model: str, revision: str, known: list[str], as_json: bool) -> None:
    """A folder whose weights the registry already holds: where to find them, no job."""
    if as_json:
        click.echo(_dump({"job": None, "revision": revision, "known_as": known}))
        return
    click.echo(
        f"already analysed: {model} holds the weights recorded as {', '.join(known)} "
        f"@ {revision}; not queued (--force to analyse it again)"
    )
    click.echo(f"  see: swreg lookup {known[0]} --revision {revision}")


def _wait(factory, job_id: int, timeout: float | None) -> JobOut:
    """Follow the job until it ends, showing its state and its stage's progress on stderr (a
    bar on a terminal, plain lines otherwise)."""
    from registry.database import transaction
    from registry.jobs import service, workers
    from registry.jobs.eta import job_estimate
    from registry.jobs.schemas import JobOut
    from registry.time_left import Estimate

    deadline = None if timeout is None else time.monotonic() + timeout
    state = None
    silent_noted = False
    eta_stage = None
    with StageProgress(one_bar=True, prefix=f"job {job_id}: ") as display:
        while True:
            with transaction(factory) as session:
                row = service.get_job(session, job_id)
                job = JobOut.of(row, eta=job_estimate(session, row))
                silent_for, last = workers.silence(session)
            if job.stage and job.progress:
                display(job.stage, job.progress.done, job.progress.total)
            if job.eta is not None:
                display.overall(
                    Estimate(
                        job.eta.seconds,
                        job.eta.scope,
                        job.eta.basis,
                        job.eta.elapsed_seconds or 0.0,
                        job.stage or "",
                    )
                )
            if job.eta is not None and job.stage != eta_stage:
                # The whole job's time left, said at each new stage (the bar or lines give the
                # stage's own).
                eta_stage = job.stage
                display.note(f"job {job_id}: about {job.eta.seconds:.0f} s left ({job.eta.basis})")
            if job.state != state:
                state = job.state
                worker = f" on {job.lease_owner}" if job.lease_owner else ""
                display.note(f"job {job_id}: {state.value}{worker}")
            # A queued job waits for a worker: say so (once per silence) when none is alive.
            silent = job.state == JobState.QUEUED and (
                silent_for is None or silent_for > workers.SILENT_AFTER_SECONDS
            )
            if silent and not silent_noted:
                display.note(f"job {job_id}: {_silence(silent_for, last)}")
            silent_noted = silent
            if job.state in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                why = f": {_silence(silent_for, last)}" if silent else ""
                raise SwregError(
                    f"job {job_id} is still {job.state.value} after {timeout:g} s{why}"
                )
            time.sleep(WAIT_POLL_SECONDS)


def _silence(silent_for: float | None, last) -> str:
    start = "start one with `swreg worker` (on any machine that reaches this database)"
    if silent_for is None:
        return f"no worker has been seen yet: {start}"
    return (
        f"no worker has been seen for {silent_for:.0f} s (last: {last.name}): the job waits; "
        f"{start}"
    )


@click.group(invoke_without_command=True)
@click.option(
    "--state", type=click.Choice([s.value for s in JobState]), help="Only jobs in this state."
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=DEFAULT_LIST_LIMIT, show_default=True
)
@click.option(
    "--after",
    type=click.IntRange(1, 2**31 - 1),
    metavar="JOB_ID",
    help="Only jobs older than this one (the last id of the previous page).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@api_option
@click.pass_context
def jobs(
    ctx: click.Context,
    state: str | None,
    limit: int,
    after: int | None,
    as_json: bool,
    api_url: str | None,
) -> None:
    """List jobs, newest first (`swreg jobs show ID` for one).

    \b
    Examples:
      swreg jobs
      swreg jobs --state failed --limit 10
      swreg jobs --after 120             # the jobs before job 120
      swreg jobs --json
      swreg jobs show 1
      swreg jobs --api http://127.0.0.1:8000 --state running
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = api_url  # `swreg jobs --api URL show ID` reads from that server too
        return
    items = reader(api_url).jobs(state=state, limit=limit, after=after)
    if as_json:
        click.echo(_dump([j.model_dump(mode="json") for j in items]))
        return
    for line in table(JOB_COLUMNS, [_job_row(job) for job in items]):
        click.echo(line)


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@api_option
@click.pass_context
def show(ctx: click.Context, job_id: int, as_json: bool, api_url: str | None) -> None:
    """One job: state, attempts, error, timings, times.

    \b
    Examples:
      swreg jobs show 1
      swreg jobs show 1 --json
      swreg jobs show 1 --api http://127.0.0.1:8000
    """
    job = reader(api_url or ctx.obj).job(job_id)
    if as_json:
        click.echo(_dump(job.model_dump(mode="json")))
        return
    for line in _show(job):
        click.echo(line)
