"""The worker: claim a job, fetch its checkpoint, analyse it, record the result, repeat.

    claim (lease) → fetch (Hub cache or local directory) → analyse (detect + validate)
      → one transaction: fenced completion + record_report → next job

A background thread heartbeats while a job runs, extending the lease. The analysis itself runs in
a child process under a memory limit (workers/worker/isolation.py): whatever a model does to it,
the worker lives on. A failing job is retried with backoff or failed with a one-line reason (at
once when the failure is permanent: a refused checkpoint, or anything the model's analysis
raised), and the worker goes on with the next job. SIGTERM/SIGINT: finish the current job and
exit; a second signal abandons it, handing it back to the queue.

Outages: the worker rides them out. While the database is unreachable (at start-up too) it waits
with exponential backoff and jitter and tries again; a finished result whose completion write
fails is written again, with backoff, as long as the lease is still ours; and a job that failed
because something it depends on is unavailable (the database, the Hub) is handed back to the
queue for later without using up an attempt.

Run it with `swreg worker` or `python -m workers.worker`.
"""

import logging
import math
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from registry.database import is_unavailable, write_transaction
from registry.errors import DatabaseUnavailable, one_line
from registry.jobs import queue
from registry.jobs import workers as worker_heartbeats
from registry.jobs.lineage_rechecks import Recheck, queue_rechecks
from registry.jobs.models import Job, JobSource, JobState
from registry.jobs.queue import Lease, LeaseLost
from registry.migrate import check_current
from registry.settings import get_settings
from registry.superweights.service import (
    lineage_base,
    record_quantization_check,
    record_report,
    revision_kind_of,
)
from workers.contract.errors import Unavailable
from workers.contract.lineage import LineageCheck
from workers.contract.progress import JOB_STAGES
from workers.contract.quantization import QuantizationCheck
from workers.contract.report import Report
from workers.science import limits
from workers.science.device import require_device
from workers.science.errors import CheckpointRefused
from workers.sources import hub, hub_client, local
from workers.sources.cache_budget import CacheBudget
from workers.sources.listing import FetchResult
from workers.worker import isolation

log = logging.getLogger("swreg.worker")
# What an optional step of a job returns (the quantization check, the lineage check).
StepResult = TypeVar("StepResult")

DEFAULT_POLL_SECONDS = 5.0
# Heartbeats per lease period: a worker survives a couple of missed beats (a slow database).
HEARTBEATS_PER_LEASE = 3
# Waiting for an unavailable database: 1 s, 2 s, 4 s, ... up to a minute, each drawn between
# half and all of it (jitter), so that workers cut off together do not return together.
OUTAGE_BACKOFF_FIRST_SECONDS = 1.0
OUTAGE_BACKOFF_MAX_SECONDS = 60.0
# A job handed back because the Hub or the database was unavailable waits this long.
INFRASTRUCTURE_RETRY_SECONDS = 60.0
# Completion is not tried again when less than this is left of the lease: the write could land
# after the lease ran out, and a fenced write would then be refused anyway.
LEASE_MARGIN_SECONDS = 1.0
# A running job's progress is written at every new stage and at the end of each, and in between
# at most this often: live enough for a person watching, few writes for the database.
PROGRESS_INTERVAL_SECONDS = 1.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"


class StopNow(BaseException):
    """A second stop signal: abandon the current job now. A BaseException so that no
    `except Exception` inside analysis swallows it."""


@dataclass
class WorkerConfig:
    device: str = "cpu"
    lease_seconds: float = 600.0
    poll_seconds: float = DEFAULT_POLL_SECONDS
    # Stop when no job is claimable instead of polling (drain the queue once).
    once: bool = False
    max_jobs: int | None = None
    max_checkpoint_bytes: int = 64 * 1024**3
    backoff_base_seconds: float = queue.RETRY_BACKOFF_BASE_SECONDS
    validate: bool = True
    progress_seconds: float = PROGRESS_INTERVAL_SECONDS
    # Run the quantization check after the analysis and store it with the revision.
    quantize_check: bool = False
    # Bytes the Hub cache may hold (None: no bound); see workers.sources.cache_budget.
    cache_budget_bytes: int | None = None
    # What each analysis's child process may allocate (0: isolation.memory_limit's default, a
    # share of this machine's memory).
    memory_limit_bytes: int = 0
    # Every Hub call bounded (workers/sources/hub_client.py); `hub_read_seconds` is the stall
    # timeout of a fetch: no bytes for that long hands the job back to the queue.
    hub_connect_seconds: float = hub_client.DEFAULT_CONNECT_TIMEOUT_SECONDS
    hub_read_seconds: float = hub_client.DEFAULT_READ_TIMEOUT_SECONDS
    # What a worker parses and builds (workers/science/limits.py).
    caps: limits.Limits = field(default_factory=limits.Limits)

    @classmethod
    def from_settings(cls, **overrides: Any) -> "WorkerConfig":
        settings = get_settings()
        values: dict[str, Any] = {
            "device": settings.device,
            "lease_seconds": float(settings.job_lease_seconds),
            "max_checkpoint_bytes": settings.max_checkpoint_bytes,
            "quantize_check": settings.quantize_check,
            "cache_budget_bytes": settings.worker_cache_budget_bytes,
            "memory_limit_bytes": settings.worker_memory_limit_bytes,
            "hub_connect_seconds": settings.hub_connect_timeout_seconds,
            "hub_read_seconds": settings.hub_read_timeout_seconds,
            "caps": limits.Limits(
                config_bytes=settings.max_config_bytes,
                tokenizer_bytes=settings.max_tokenizer_bytes,
                shard_index_bytes=settings.max_shard_index_bytes,
                parameters=settings.max_parameters,
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def outage_backoff(failures: int) -> float:
    """Seconds to wait after `failures` consecutive failures to reach the database (>= 1)."""
    ceiling = min(OUTAGE_BACKOFF_MAX_SECONDS, OUTAGE_BACKOFF_FIRST_SECONDS * 2 ** (failures - 1))
    return random.uniform(ceiling / 2, ceiling)


def is_infrastructure_failure(error: BaseException) -> bool:
    """Whether a job failed because something it depends on is unavailable (the database, the
    Hub), not because of the job itself: such a failure does not use up an attempt."""
    if isinstance(error, Unavailable):
        return True
    return isinstance(error, SQLAlchemyError) and is_unavailable(error)


def worker_name() -> str:
    # Unique per process and start: a restarted worker with the same pid is another owner.
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Heartbeat(threading.Thread):
    """Extends the lease every lease/3 seconds; flags `lost` when the lease is gone."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        lease: Lease,
        lease_seconds: float,
        *,
        renewed_at: float | None = None,
    ):
        super().__init__(name=f"heartbeat-{lease.job_id}", daemon=True)
        self.factory, self.lease, self.lease_seconds = factory, lease, lease_seconds
        self.interval = lease_seconds / HEARTBEATS_PER_LEASE
        self.lost = threading.Event()
        self._halt = threading.Event()
        # time.monotonic() when the lease was last extended, taken *before* the write: the
        # lease surely lasts until renewed_at + lease_seconds (the database's clock counts from
        # a later instant).
        self.renewed_at = time.monotonic() if renewed_at is None else renewed_at

    def lease_left(self) -> float:
        """Seconds the lease surely has left, by this process's clock."""
        return self.renewed_at + self.lease_seconds - time.monotonic()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            started = time.monotonic()
            try:
                with write_transaction(self.factory) as session:
                    alive = queue.heartbeat(session, self.lease, lease_seconds=self.lease_seconds)
                    if alive:
                        worker_heartbeats.record_seen(
                            session, self.lease.owner, job_id=self.lease.job_id
                        )
            except Exception as exc:  # a database hiccup: the lease still has time, try again
                log.warning("job %s: heartbeat failed: %s", self.lease.job_id, one_line(exc))
                continue
            if alive:
                self.renewed_at = started
            if not alive:
                log.warning("job %s: lease lost; abandoning the job", self.lease.job_id)
                self.lost.set()
                return

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()


class ProgressWriter:
    """The analysis's `progress(stage, done, total)`, written to the job under its lease.

    The job shows one stage: the one furthest along in JOB_STAGES. Stages reported side by side
    (the sweep detects and validates each layer as it goes by) therefore never make it go back
    and forth, and `progress` only moves forward within a stage. `timings` carries the seconds
    each stage has taken so far (from its first report to its latest). A lost lease stops the
    analysis (LeaseLost): the place to give up a job another worker may hold.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        lease: Lease,
        lease_lost: Callable[[], bool],
        *,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.factory, self.lease, self.lease_lost = factory, lease, lease_lost
        self.interval, self.clock = interval, clock
        self.timings: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self._shown: tuple[int, str, int, int] | None = None  # (rank, stage, done, total)
        self._written_at = -math.inf

    def _rank(self, stage: str) -> int:
        # Stages this worker does not know of rank after the known ones, in order of arrival.
        if stage in JOB_STAGES:
            return JOB_STAGES.index(stage)
        return len(JOB_STAGES) + list(self._first).index(stage)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.lease_lost():
            raise LeaseLost(f"job {self.lease.job_id}: lease lost during analysis")
        now = self.clock()
        self._first.setdefault(stage, now)
        self.timings[stage] = round(now - self._first[stage], 3)
        rank = self._rank(stage)
        shown = self._shown
        if shown is not None and (rank, done) < (shown[0], shown[2]):
            return  # an earlier stage, or an older count: the job already shows more
        new_stage = shown is None or rank != shown[0]
        finished = done >= total
        if new_stage:
            log.info("job %s: %s (%d/%d)", self.lease.job_id, stage, done, total)
        if not (new_stage or finished or now - self._written_at >= self.interval):
            self._shown = (rank, stage, done, total)
            return
        self._shown = (rank, stage, done, total)
        self._write(stage, done, total, now)

    def _write(self, stage: str, done: int, total: int, now: float) -> None:
        try:
            with write_transaction(self.factory) as session:
                ours = queue.report_progress(
                    session,
                    self.lease,
                    stage=stage,
                    done=done,
                    total=total,
                    timings=dict(self.timings),
                )
        except Exception as exc:  # a database hiccup costs a progress line, not the job
            log.warning("job %s: progress not recorded: %s", self.lease.job_id, one_line(exc))
            return
        if not ours:
            raise LeaseLost(f"job {self.lease.job_id}: lease lost during analysis")
        self._written_at = now


class Worker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        config: WorkerConfig,
        *,
        name: str | None = None,
    ):
        self.factory = factory
        self.config = config
        self.name = name or worker_name()
        self.stop_requested = threading.Event()
        self._signals = 0
        self.budget = None
        if config.cache_budget_bytes is not None:
            from huggingface_hub import constants

            # The cache huggingface_hub uses now (HF_HUB_CACHE), as the fetch does.
            self.budget = CacheBudget(
                Path(constants.HF_HUB_CACHE).expanduser(), config.cache_budget_bytes
            )

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or the queue is drained with `once`); returns jobs processed."""
        processed = 0
        # A device this machine lacks is refused before seconds of imports, and before any claim
        # (and before the log says the worker started).
        require_device(self.config.device)
        log.info("worker %s started (device %s)", self.name, self.config.device)
        # torch and transformers take seconds to import: before the first lease, not during it
        # (here, and in the forkserver the analyses are forked from).
        import workers.science.pipeline.sweep  # noqa: F401

        if self.budget is not None:
            self.budget.recover()  # what a crash may have left in the cache
        self.apply_bounds()
        isolation.warm_up()

        try:
            self.wait_for_database()
            failures = 0
            while not self.stop_requested.is_set():
                if self.config.max_jobs is not None and processed >= self.config.max_jobs:
                    break
                try:
                    did_work = self.run_one()
                    failures = 0
                except Exception as exc:
                    if not is_infrastructure_failure(exc):
                        raise
                    failures += 1
                    delay = outage_backoff(failures)
                    log.warning(
                        "worker %s: database unavailable (%s); trying again in %.1f s",
                        self.name,
                        one_line(exc),
                        delay,
                    )
                    self.stop_requested.wait(delay)
                    continue
                if did_work:
                    processed += 1
                elif self.config.once:
                    break
                else:
                    self.stop_requested.wait(self.config.poll_seconds)
        except StopNow:
            pass
        log.info("worker %s stopped after %d job(s)", self.name, processed)
        return processed

    def apply_bounds(self) -> None:
        """The worker's Hub timeouts and parsing caps, for this process and its analyses."""
        hub_client.configure(
            hub_client.HubTimeouts(
                connect=self.config.hub_connect_seconds, read=self.config.hub_read_seconds
            )
        )
        limits.configure(**vars(self.config.caps))

    def wait_for_database(self) -> None:
        """Return once the database answers and its schema is current; until then wait with
        backoff and jitter (a stop request ends the wait). A schema that is out of date is no
        outage: DatabaseOutOfDate is raised at once."""
        engine = self.factory.kw["bind"]
        failures = 0
        while not self.stop_requested.is_set():
            try:
                check_current(engine)
                if failures:
                    log.info("worker %s: the database is back", self.name)
                return
            except DatabaseUnavailable as exc:
                failures += 1
                delay = outage_backoff(failures)
                log.warning(
                    "worker %s: %s; trying again in %.1f s", self.name, one_line(exc), delay
                )
                self.stop_requested.wait(delay)

    def run_one(self) -> bool:
        """Claim and process one job; False when none was claimable."""
        claimed_at = time.monotonic()
        with write_transaction(self.factory) as session:
            claimed = queue.claim(session, owner=self.name, lease_seconds=self.config.lease_seconds)
            # Seen at every poll (and at every heartbeat while it works): who waits on a queued
            # job can tell whether any worker is alive.
            worker_heartbeats.record_seen(
                session, self.name, job_id=claimed[0].id if claimed else None
            )
        if claimed is None:
            return False
        job, lease = claimed
        try:
            self.process(job, lease, claimed_at=claimed_at)
        finally:
            if self.budget is not None and job.source == JobSource.HUB:
                # After the job, least recently used first: this job's model goes last.
                self.budget.enforce()
        return True

    # --- one job --------------------------------------------------------------------------

    def process(
        self, job: Job, lease: Lease, *, claimed_at: float | None = None
    ) -> JobState | None:
        """Run one claimed job to its end; returns its new state (None: no longer ours)."""
        log.info(
            "job %s: claimed %s@%s (attempt %d/%d)",
            job.id,
            job.model_id,
            job.revision,
            lease.attempt,
            job.max_attempts,
        )
        heartbeat = Heartbeat(self.factory, lease, self.config.lease_seconds, renewed_at=claimed_at)
        heartbeat.start()
        progress = ProgressWriter(
            self.factory, lease, heartbeat.lost.is_set, interval=self.config.progress_seconds
        )
        fetched: FetchResult | None = None
        try:
            timings: dict[str, float] = {}
            started = time.perf_counter()
            progress("fetch", 0, 1)
            fetched = self._fetch(job)
            progress("fetch", 1, 1)
            timings["fetch"] = round(time.perf_counter() - started, 3)
            log.info(
                "job %s: fetched %d file(s), %d bytes downloaded of %d in the repository (%.1f s)",
                job.id,
                len(fetched.files),
                fetched.downloaded_bytes,
                fetched.repo_bytes,
                timings["fetch"],
            )
            analysing = time.perf_counter()
            report = self._analyse(job, fetched, progress)
            timings["analyse"] = round(time.perf_counter() - analysing, 3)
            timings.update(_step_timings(report))
            check = None
            if self.config.quantize_check:
                checking = time.perf_counter()
                check = self._quantize_check(job, fetched, report, progress)
                if check is not None:
                    timings["quantize_check"] = round(time.perf_counter() - checking, 3)
            # A model card naming the model itself names no base.
            base_model = fetched.base_model if fetched.base_model != job.model_id else None
            lineage = None
            if base_model is not None:
                checking = time.perf_counter()
                lineage = self._lineage_check(job, fetched, report, base_model, progress)
                if lineage is not None:
                    timings["lineage_check"] = round(time.perf_counter() - checking, 3)
            timings["total"] = round(time.perf_counter() - started, 3)
            heartbeat.stop()
            self._complete(
                job,
                lease,
                report,
                timings,
                fetched,
                heartbeat.lease_left,
                check,
                base_model=base_model,
                lineage=lineage,
            )
            counts = _state_counts(report)
            log.info(
                "job %s: succeeded in %.1f s (%s)",
                job.id,
                timings["total"],
                counts or "no super weights",
            )
            return JobState.SUCCEEDED
        except LeaseLost as exc:
            log.warning("job %s: %s", job.id, exc)
            return None
        except (StopNow, KeyboardInterrupt):
            heartbeat.stop()
            self._release(lease)
            raise StopNow from None
        except Exception as exc:
            heartbeat.stop()
            if is_infrastructure_failure(exc):
                return self._postpone(job, lease, exc, heartbeat.lease_left)
            return self._fail(job, lease, exc, fetched)
        finally:
            heartbeat.stop()

    def _fetch(self, job: Job) -> FetchResult:
        self.apply_bounds()
        if job.source == JobSource.LOCAL:
            if not job.local_path:
                # Never a default folder: Path("") is the worker's own working directory.
                raise CheckpointRefused(f"job {job.id}: a local job with no folder to read")
            result, _ = local.fetch_local(
                Path(job.local_path),
                max_bytes=self.config.max_checkpoint_bytes,
                expected_revision=job.revision,
            )
            return result
        # No token argument: huggingface_hub reads HF_TOKEN (or the saved login) itself.
        return hub.fetch_hub(
            job.model_id,
            job.revision,
            max_bytes=self.config.max_checkpoint_bytes,
            budget=self.budget,
        )

    def _analyse(self, job: Job, fetched: FetchResult, progress: ProgressWriter) -> Report:
        # Imported here: torch and transformers load in seconds, and only a worker needs them.
        from workers.science.pipeline.steps import AnalysisOptions
        from workers.science.pipeline.sweep import analyse

        options = AnalysisOptions(
            device=self.config.device,
            validate=self.config.validate,
            file_sha256=fetched.weight_sha256 or None,
        )
        log.info("job %s: analysing on %s", job.id, self.config.device)
        return self._isolated(job, "analysis", analyse, fetched.path, options, progress=progress)

    def _isolated(self, job: Job, what: str, target, *args, progress: ProgressWriter):
        """`target(*args)` in a child process under the worker's memory limit (isolation)."""
        limit = isolation.memory_limit(self.config.memory_limit_bytes)
        peak = 0
        try:
            outcome = isolation.run_isolated(target, *args, limit=limit, progress=progress)
            peak = outcome.peak_bytes
            return outcome.value
        except Exception as exc:
            peak = getattr(exc, "peak_bytes", 0)
            raise
        finally:
            if peak:
                log.info(
                    "job %s: %s peak memory %.0f MB (limit %.0f MB)",
                    job.id,
                    what,
                    peak / 1e6,
                    limit / 1e6,
                )

    def _quantize_check(
        self, job: Job, fetched: FetchResult, report: Report, progress: ProgressWriter
    ) -> QuantizationCheck | None:
        """The quantization check of the job's weights, keeping the super weights the analysis
        has just verified; None when the check fails (an optional step: the analysis is still
        recorded, and the failure logged)."""
        from workers.contract.quantization import KeptWeight
        from workers.science.pipeline.quantize import QuantizeOptions, ToKeep, quantize_check

        keep = [
            KeptWeight(**sw.model_dump(include=set(KeptWeight.model_fields)))
            for sw in report.super_weights
            if sw.state == "verified"
        ]
        log.info("job %s: quantization check, keeping %d super weight(s)", job.id, len(keep))
        options = QuantizeOptions(
            device=self.config.device, file_sha256=fetched.weight_sha256 or None
        )
        return self._optional(
            job,
            "quantization check",
            lambda: self._isolated(
                job,
                "quantization check",
                quantize_check,
                fetched.path,
                ToKeep(keep, "detection"),
                options,
                progress=progress,
            ),
        )

    def _optional(self, job: Job, what: str, step: Callable[[], StepResult]) -> StepResult | None:
        """`step()`, an optional step of a job: its failure is logged and costs the analysis
        nothing (None); a lost lease still stops the job."""
        try:
            return step()
        except LeaseLost:
            raise
        except Exception as exc:  # anything the step meets must not cost the analysis
            log.error(
                "job %s: %s failed, the analysis is recorded without it: %s",
                job.id,
                what,
                one_line(exc),
                exc_info=True,
            )
            return None

    def _lineage_check(
        self,
        job: Job,
        fetched: FetchResult,
        report: Report,
        base_model: str,
        progress: ProgressWriter,
    ) -> LineageCheck | None:
        """The base's verified super weights checked in this job's weights (the science's
        `check_lineage`: from this job's detection where it judged them, else by ablation in a
        child process); None when the registry holds no verified coordinate of the base, or
        when the check fails (an optional step: the analysis is still recorded, and the failure
        logged)."""
        from workers.science.pipeline.lineage import Checked, ToCheck, check_lineage, lineage_check
        from workers.science.pipeline.steps import AnalysisOptions

        def check() -> LineageCheck | None:
            with self.factory() as session:
                base = lineage_base(session, base_model)
            if not base:
                log.info("job %s: base model %s has no verified coordinates", job.id, base_model)
                return None
            log.info(
                "job %s: lineage check of %d super weight(s)%s of %s@%s",
                job.id,
                len(base.coordinates),
                f" and {len(base.super_experts)} super expert(s)" if base.super_experts else "",
                base.model_id,
                base.revision[:12],
            )
            options = AnalysisOptions(
                device=self.config.device, file_sha256=fetched.weight_sha256 or None
            )

            def ablate(to_check: ToCheck) -> Checked:
                return self._isolated(
                    job,
                    "lineage check",
                    lineage_check,
                    fetched.path,
                    to_check,
                    options,
                    progress=progress,
                )

            return check_lineage(report, base, ablate)

        found = self._optional(job, "lineage check", check)
        if found is None:
            return None
        experts = found.super_experts
        log.info(
            "job %s: keeps %d of %d verified super weight(s)%s of %s",
            job.id,
            found.count("kept"),
            len(found.coordinates),
            f" and {found.count_experts('kept')} of {len(experts)} super expert(s)"
            if experts is not None
            else "",
            base_model,
        )
        return found

    def _complete(
        self,
        job: Job,
        lease: Lease,
        report: Report,
        timings: dict[str, float],
        fetched: FetchResult,
        lease_left: Callable[[], float],
        check: QuantizationCheck | None = None,
        *,
        base_model: str | None = None,
        lineage: LineageCheck | None = None,
    ) -> None:
        rechecks: list[Recheck] = []

        def record(session: Session) -> int:
            revision = record_report(
                session,
                model_id=job.model_id,
                revision=job.revision,
                revision_kind=revision_kind_of(job.revision),
                report=report,
                base_model=base_model,
                lineage_check=lineage,
            )
            if check is not None:
                record_quantization_check(session, revision, check)
            # This model's fine-tunes the registry holds, checked against what it now verified.
            states = [sw.state for sw in report.super_weights]
            states += [e.state for e in report.super_experts]
            rechecks[:] = queue_rechecks(session, job.model_id) if "verified" in states else []
            return revision.id

        def write() -> None:
            with write_transaction(self.factory) as session:
                queue.complete(
                    session, lease, record=record, timings=timings, fetch=fetched.summary()
                )

        try:
            self._while_leased(job, "completion", write, lease_left)
        except LeaseLost:
            # A retried completion whose earlier try did commit (the reply was lost) finds
            # the job already succeeded under this very attempt: that is success.
            if not self._completed_by(lease):
                raise
            log.info("job %s: an earlier completion write had succeeded", job.id)
        for recheck in rechecks:
            log.info(
                "job %s: fine-tune %s@%s %s job %s for its lineage check (%s)",
                job.id,
                recheck.model_id,
                recheck.revision[:12],
                "queued as" if recheck.created else "already pending as",
                recheck.job_id,
                recheck.reason,
            )

    def _completed_by(self, lease: Lease) -> bool:
        with self.factory() as session:
            job = session.get(Job, lease.job_id)
            return (
                job is not None
                and job.state == JobState.SUCCEEDED
                and job.attempts == lease.attempt
            )

    def _while_leased(
        self, job: Job, what: str, write: Callable[[], Any], lease_left: Callable[[], float]
    ) -> Any:
        """`write()`, tried again with backoff and jitter while the database is unavailable and
        the lease surely has time left; the last error is raised when it runs out."""
        failures = 0
        while True:
            try:
                return write()
            except Exception as exc:
                if not is_infrastructure_failure(exc):
                    raise
                failures += 1
                delay = outage_backoff(failures)
                if lease_left() - delay < LEASE_MARGIN_SECONDS:
                    log.error(
                        "job %s: %s write failed (%s) and the lease runs out; giving up",
                        job.id,
                        what,
                        one_line(exc),
                    )
                    raise
                log.warning(
                    "job %s: %s write failed (%s); trying again in %.1f s",
                    job.id,
                    what,
                    one_line(exc),
                    delay,
                )
                time.sleep(delay)

    def _postpone(
        self, job: Job, lease: Lease, exc: Exception, lease_left: Callable[[], float]
    ) -> JobState | None:
        log.warning(
            "job %s: attempt %d interrupted by an outage (%s); handing it back for later",
            job.id,
            lease.attempt,
            one_line(exc),
        )

        def write() -> bool:
            with write_transaction(self.factory) as session:
                return queue.postpone(
                    session, lease, exc, delay_seconds=INFRASTRUCTURE_RETRY_SECONDS
                )

        try:
            postponed = self._while_leased(job, "postpone", write, lease_left)
        except Exception as error:
            log.error("job %s: could not hand the job back: %s", job.id, one_line(error))
            return None
        if not postponed:
            log.warning("job %s: lease lost before handing the job back", job.id)
            return None
        return JobState.QUEUED

    def _fail(
        self, job: Job, lease: Lease, exc: Exception, fetched: FetchResult | None
    ) -> JobState | None:
        permanent = bool(getattr(exc, "permanent", False))
        log.log(
            logging.WARNING if permanent else logging.ERROR,
            "job %s: attempt %d failed: %s",
            job.id,
            lease.attempt,
            one_line(exc),
            exc_info=not permanent,
        )
        try:
            with write_transaction(self.factory) as session:
                state = queue.fail(
                    session,
                    lease,
                    exc,
                    permanent=permanent,
                    backoff_base_seconds=self.config.backoff_base_seconds,
                    fetch=fetched.summary() if fetched else None,
                )
        except LeaseLost as lost:
            log.warning("job %s: %s", job.id, lost)
            return None
        log.info(
            "job %s: %s", job.id, "failed" if state == JobState.FAILED else "queued for a retry"
        )
        return state

    def _release(self, lease: Lease) -> None:
        try:
            with write_transaction(self.factory) as session:
                released = queue.release(session, lease)
        except Exception as exc:
            log.error(
                "job %s: could not hand the job back: %s (its lease will expire)",
                lease.job_id,
                one_line(exc),
            )
            return
        if released:
            log.info("job %s: handed back to the queue", lease.job_id)

    # --- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish the current job, then exit. Second: abandon it now."""

        def handle(signum: int, _frame: Any) -> None:
            self._signals += 1
            if self._signals == 1:
                log.info(
                    "worker %s: %s received; finishing the current job, then stopping "
                    "(send it again to stop now)",
                    self.name,
                    signal.Signals(signum).name,
                )
                self.stop_requested.set()
            else:
                raise StopNow()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


def _step_timings(report: Report) -> dict[str, float]:
    """The analysis's own step timings (load, detect, validate, score, …), in seconds; its
    total is the worker's `analyse` (which also counts what analysis does not time)."""
    return {name: round(value, 3) for name, value in report.timings.items() if name != "total"}


def _state_counts(report: Report) -> str:
    counts = Counter(sw.state for sw in report.super_weights)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    # The schema check at start-up would log Alembic's context lines on every start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
