"""The worker loop, in one process on SQLite: it drains the queue or stops after so many jobs,
polls while idle, waits out a database that is down (at start-up and between jobs) with growing
delays, runs a job to each of its ends, stops on signals, and runs the optional quantization
check. (Real `swreg worker` processes: test_signals.py, test_outages.py, test_worker.py.)"""

import logging
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import torch

from registry import migrate
from registry.database import make_engine, make_sessionmaker
from registry.errors import DatabaseOutOfDate
from registry.jobs import queue, service
from registry.jobs.models import Job, JobSource, JobState
from registry.jobs.queue import write_transaction
from registry.superweights.service import lookup
from tests.helpers import (
    SHA,
    WORKER_CMD,
    add_jobs,
    in_thread,
    python_env,
    take_over,
    worker_messages,
)
from workers.science.device import DeviceUnavailable
from workers.worker import isolation, loop
from workers.worker.loop import StopNow, Worker, WorkerConfig

NAME = "this-worker"
THREAD_TIMEOUT_S = 60


def _states(sessions) -> list[tuple[JobState, int]]:
    with sessions() as session:
        return [(j.state, j.attempts) for j in session.query(Job).order_by(Job.id)]


@pytest.fixture
def refused_jobs(sessions, tmp_path):
    """`count` local jobs whose folder is gone: each fails at once, without loading torch."""

    def add(count: int) -> list[int]:
        missing = str(tmp_path / "gone")
        return add_jobs(
            sessions, count, prefix="me/gone", source=JobSource.LOCAL, local_path=missing
        )

    return add


@pytest.fixture
def backoff(monkeypatch) -> list[int]:
    """Short outage delays; records how many failures in a row each was drawn for."""
    seen: list[int] = []

    def short(failures: int) -> float:
        seen.append(failures)
        return 0.05

    monkeypatch.setattr(loop, "outage_backoff", short)
    return seen


# --- the loop --------------------------------------------------------------------------------


def test_once_drains_the_queue_then_stops(sessions, refused_jobs, log):
    refused_jobs(3)
    worker = Worker(sessions, WorkerConfig(once=True), name=NAME)
    assert worker.run() == 3
    assert _states(sessions) == [(JobState.FAILED, 1)] * 3
    messages = worker_messages(log)
    assert messages[0] == f"worker {NAME} started (device cpu)"
    assert messages[-1] == f"worker {NAME} stopped after 3 job(s)"


def test_max_jobs_stops_the_worker_after_that_many(sessions, refused_jobs):
    refused_jobs(3)
    worker = Worker(sessions, WorkerConfig(max_jobs=2, poll_seconds=0.05), name=NAME)
    assert worker.run() == 2
    assert _states(sessions) == [(JobState.FAILED, 1)] * 2 + [(JobState.QUEUED, 0)]


def test_an_idle_worker_polls_until_work_arrives(sessions, refused_jobs):
    worker = Worker(sessions, WorkerConfig(max_jobs=1, poll_seconds=0.05), name=NAME)
    thread, result = in_thread(worker.run)
    time.sleep(0.5)
    assert thread.is_alive()  # no job yet: it waits for one rather than stopping
    refused_jobs(1)
    thread.join(THREAD_TIMEOUT_S)
    assert result == {"value": 1}
    assert _states(sessions) == [(JobState.FAILED, 1)]


def test_a_stop_request_ends_an_idle_worker(sessions):
    worker = Worker(sessions, WorkerConfig(poll_seconds=0.05), name=NAME)
    thread, result = in_thread(worker.run)
    time.sleep(0.3)
    worker.stop_requested.set()
    thread.join(THREAD_TIMEOUT_S)
    assert result == {"value": 0}


def test_a_claim_refused_by_an_outage_is_tried_again_with_growing_delays(
    sessions, refused_jobs, backoff, log, unavailable_error
):
    refused_jobs(2)
    worker = Worker(sessions, WorkerConfig(once=True), name=NAME)
    run_one = worker.run_one
    # The database is down at two claims, back for one job, down once more, then back.
    outages = iter([True, True, False, True, False, False])

    def claim_through_outages() -> bool:
        if next(outages):
            raise unavailable_error
        return run_one()

    worker.run_one = claim_through_outages
    assert worker.run() == 2
    # The count of failures in a row starts again after a claim that worked.
    assert backoff == [1, 2, 1]
    warnings = [m for m in worker_messages(log, logging.WARNING) if m.startswith("worker ")]
    assert len(warnings) == 3
    for warning in warnings:
        assert warning.startswith(f"worker {NAME}: database unavailable (OperationalError: ")
        assert warning.endswith("; trying again in 0.1 s")


def test_a_failure_that_is_no_outage_stops_the_worker(sessions, refused_jobs):
    refused_jobs(1)
    worker = Worker(sessions, WorkerConfig(once=True), name=NAME)

    def broken() -> bool:
        raise ValueError("a bug in the loop")

    worker.run_one = broken
    with pytest.raises(ValueError, match="a bug in the loop"):
        worker.run()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU asked for")
def test_a_worker_asked_for_a_gpu_it_lacks_stops_before_claiming_anything(sessions, refused_jobs):
    refused_jobs(1)
    worker = Worker(sessions, WorkerConfig(device="cuda", once=True), name=NAME)
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        worker.run()
    # Every job would have failed on it and used up its attempts: none was touched.
    assert _states(sessions) == [(JobState.QUEUED, 0)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU asked for")
def test_swreg_worker_asked_for_a_gpu_it_lacks_says_so_in_one_line(sqlite_url):
    run = subprocess.run(
        [*WORKER_CMD, "--device", "cuda", "--once"],
        env=python_env(SWREG_DATABASE_URL=sqlite_url),
        capture_output=True,
        text=True,
        timeout=THREAD_TIMEOUT_S * 2,
    )
    assert run.returncode == 2, run.stderr
    # Nothing before it: the worker never said it started.
    assert run.stderr.splitlines() == ["error: device cuda: no CUDA device is available"]
    assert "Traceback" not in run.stderr


# --- waiting for the database ----------------------------------------------------------------


def test_a_worker_waits_for_its_database_to_come_up(tmp_path, backoff, log):
    blocker = tmp_path / "data"
    blocker.write_text("not yet a folder")
    engine = make_engine(f"sqlite:///{blocker}/registry.db")
    worker = Worker(make_sessionmaker(engine), WorkerConfig(once=True), name=NAME)
    try:
        thread, result = in_thread(worker.wait_for_database)
        deadline = time.monotonic() + THREAD_TIMEOUT_S
        while len(backoff) < 3:
            assert time.monotonic() < deadline and thread.is_alive(), result
            time.sleep(0.02)
        # The database comes up whole: migrated elsewhere, moved into place in one rename.
        staging = tmp_path / "staging"
        staging.mkdir()
        migrate.upgrade(f"sqlite:///{staging}/registry.db")
        blocker.unlink()
        staging.rename(blocker)
        thread.join(THREAD_TIMEOUT_S)
        assert result == {"value": None}
    finally:
        engine.dispose()
    assert backoff[:3] == [1, 2, 3]
    warnings = worker_messages(log, logging.WARNING)
    assert warnings[0].startswith(f"worker {NAME}: cannot open database sqlite:///{blocker}")
    assert warnings[0].endswith("; trying again in 0.1 s")
    assert worker_messages(log, logging.INFO)[-1] == f"worker {NAME}: the database is back"


def test_a_database_up_at_start_is_not_announced_as_back(sessions, log):
    Worker(sessions, WorkerConfig(), name=NAME).wait_for_database()
    assert worker_messages(log) == []


def test_a_stop_request_ends_the_wait_for_the_database(unreachable_sessions, backoff, log):
    worker = Worker(unreachable_sessions, WorkerConfig(poll_seconds=0.05), name=NAME)
    thread, result = in_thread(worker.run)
    deadline = time.monotonic() + THREAD_TIMEOUT_S
    while not backoff:
        assert time.monotonic() < deadline and thread.is_alive(), result
        time.sleep(0.02)
    worker.stop_requested.set()
    thread.join(THREAD_TIMEOUT_S)
    assert result == {"value": 0}
    assert worker_messages(log)[-1] == f"worker {NAME} stopped after 0 job(s)"


def test_a_worker_asked_to_stop_before_it_starts_does_not_touch_the_database(
    unreachable_sessions, log
):
    worker = Worker(unreachable_sessions, WorkerConfig(), name=NAME)
    worker.stop_requested.set()
    worker.wait_for_database()  # returns at once: no check, no wait
    assert worker_messages(log) == []


def test_a_schema_out_of_date_is_no_outage(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema at all
    try:
        worker = Worker(make_sessionmaker(engine), WorkerConfig(once=True), name=NAME)
        with pytest.raises(DatabaseOutOfDate):
            worker.wait_for_database()
    finally:
        engine.dispose()


# --- one job to each of its ends -------------------------------------------------------------


def _claim(worker: Worker):
    with write_transaction(worker.factory) as session:
        claimed = queue.claim(session, owner=worker.name, lease_seconds=60)
    assert claimed is not None
    return claimed


def refuse_once(monkeypatch, write: str, error: Exception) -> None:
    """The queue's `write` (complete, postpone, …) fails with `error` at its first call, as the
    database refuses it, and works from then on."""
    real = getattr(queue, write)
    refusals = iter([True])

    def refused_once(*args, **kwargs):
        if next(refusals, False):
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, write, refused_once)


def _heartbeats_running() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("heartbeat-")]


def _assert_timings(timings: dict, wall: float, parts: tuple[str, ...]) -> None:
    """Seconds, to the millisecond, each no longer than the job took; the total no less than
    its parts."""
    for name, seconds in timings.items():
        assert isinstance(seconds, float) and seconds == round(seconds, 3), (name, seconds)
        assert 0 <= seconds <= wall, (name, seconds, wall)
    assert timings["total"] >= sum(timings[part] for part in parts) - 0.002, timings


def _process(worker: Worker, job, lease, **kwargs) -> tuple[JobState | None, float]:
    started = time.perf_counter()
    state = worker.process(job, lease, **kwargs)
    return state, time.perf_counter() - started


def test_a_job_that_succeeds_records_its_result_timings_and_fetch(sessions, planted, log):
    submitted = service.submit(sessions, str(planted), model_id="local/planted").job
    worker = Worker(sessions, WorkerConfig(validate=False, lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    state, wall = _process(worker, job, lease)
    assert state == JobState.SUCCEEDED
    assert _heartbeats_running() == []
    with sessions() as session:
        done = session.get(Job, submitted.id)
        (revision,) = lookup(session, "local/planted", submitted.revision)
    assert done.state == JobState.SUCCEEDED and done.result_revision_id == revision.id
    timings = done.timings
    assert {"fetch", "analyse", "load", "detect", "total"} <= set(timings)
    assert "quantize_check" not in timings
    _assert_timings(timings, wall, ("fetch", "analyse"))
    assert done.fetch["downloaded_bytes"] == 0 and done.fetch["files"]
    states = sorted({sw.state for sw in revision.super_weights})
    assert revision.super_weights and states == ["candidate"]  # validation was off
    messages = worker_messages(log)
    assert messages[0] == (
        f"job {job.id}: claimed local/planted@{submitted.revision} (attempt 1/{job.max_attempts})"
    )
    assert re.fullmatch(
        rf"job {job.id}: fetched \d+ file\(s\), 0 bytes downloaded of \d+ in the repository "
        r"\(\d+\.\d s\)",
        next(m for m in messages if "fetched" in m),
    )
    assert f"job {job.id}: analysing on cpu" in messages
    count = len(revision.super_weights)
    assert re.fullmatch(
        rf"job {job.id}: succeeded in \d+\.\d s \({count} candidate\)", messages[-1]
    ), messages[-1]


def test_a_local_folder_changed_since_submission_is_refused(sessions, planted, tmp_path, log):
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in planted.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    submitted = service.submit(sessions, str(copy), model_id="local/changed").job
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the weights changes
    weights.write_bytes(bytes(data))
    worker = Worker(sessions, WorkerConfig(validate=False), name=NAME)
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.FAILED
    with sessions() as session:
        error = session.get(Job, submitted.id).last_error
    assert "weight files changed since submission" in error


def test_a_local_folder_over_the_cap_is_refused(sessions, planted):
    submitted = service.submit(sessions, str(planted), model_id="local/big").job
    worker = Worker(sessions, WorkerConfig(validate=False, max_checkpoint_bytes=1000), name=NAME)
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.FAILED
    with sessions() as session:
        assert "over the cap" in session.get(Job, submitted.id).last_error


def test_a_job_whose_fetch_meets_an_outage_goes_back_to_the_queue(sessions, hub_down):
    (job_id,) = add_jobs(sessions, 1, prefix="acme/not-cached", revision=SHA)
    worker = Worker(sessions, WorkerConfig(lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.QUEUED
    assert _heartbeats_running() == []
    assert _states(sessions) == [(JobState.QUEUED, 0)]


def test_a_job_whose_lease_is_lost_during_analysis_ends_without_a_state(sessions, planted, log):
    service.submit(sessions, str(planted), model_id="local/lost")
    worker = Worker(sessions, WorkerConfig(validate=False, lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    fetch = worker._fetch

    def fetch_then_lose(job):
        fetched = fetch(job)
        take_over(sessions)
        return fetched

    worker._fetch = fetch_then_lose
    worker.config.progress_seconds = 0.0  # the next progress write finds the lease gone
    assert worker.process(job, lease) is None
    assert _heartbeats_running() == []
    assert worker_messages(log, logging.WARNING)[-1] == (
        f"job {job.id}: job {job.id}: lease lost during analysis"
    )


def test_a_job_is_leased_to_the_worker_and_its_lease_counted_from_before_the_claim(
    sessions, refused_jobs
):
    refused_jobs(1)
    worker = Worker(sessions, WorkerConfig(), name=NAME)
    seen: dict = {}

    def record(job, lease, *, claimed_at=None):
        seen.update(lease=lease, claimed_at=claimed_at, called_at=time.monotonic())

    worker.process = record
    before = time.monotonic()
    assert worker.run_one()
    assert seen["lease"].owner == NAME
    with sessions() as session:
        assert session.get(Job, seen["lease"].job_id).lease_owner == NAME
    # Taken before the claim's write: the lease surely lasts from then on.
    assert isinstance(seen["claimed_at"], float)
    assert before <= seen["claimed_at"] <= seen["called_at"]


def test_a_completion_write_is_not_retried_once_the_lease_is_surely_spent(
    sessions, planted, log, monkeypatch, unavailable_error
):
    service.submit(sessions, str(planted), model_id="local/spent")
    worker = Worker(sessions, WorkerConfig(validate=False, lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    refuse_once(monkeypatch, "complete", unavailable_error)
    # Claimed a whole lease ago by this process's clock: no time is surely left to try again.
    state, _ = _process(worker, job, lease, claimed_at=time.monotonic() - 60)
    assert state == JobState.QUEUED  # handed back, the attempt not counted
    errors = worker_messages(log, logging.ERROR)
    assert any(m.endswith(") and the lease runs out; giving up") for m in errors), errors
    assert _states(sessions) == [(JobState.QUEUED, 0)]


def test_a_hand_back_refused_by_the_database_once_is_written_again(
    sessions, hub_down, monkeypatch, unavailable_error, log
):
    add_jobs(sessions, 1, prefix="acme/not-cached", revision=SHA)
    worker = Worker(sessions, WorkerConfig(lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    refuse_once(monkeypatch, "postpone", unavailable_error)
    assert worker.process(job, lease) == JobState.QUEUED
    assert _states(sessions) == [(JobState.QUEUED, 0)]
    assert any("postpone write failed" in m for m in worker_messages(log, logging.WARNING))


def test_a_job_that_fails_after_its_fetch_keeps_the_record_of_what_was_fetched(
    sessions, planted, tmp_path
):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in planted.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    config = (broken / "config.json").read_text()
    (broken / "config.json").write_text(config.replace('"llama"', '"frobnicator"'))
    submitted = service.submit(sessions, str(broken), model_id="local/broken").job
    worker = Worker(sessions, WorkerConfig(validate=False), name=NAME)
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.FAILED
    with sessions() as session:
        failed = session.get(Job, submitted.id)
    assert "frobnicator" in failed.last_error
    assert failed.fetch["files"] and failed.fetch["downloaded_bytes"] == 0


def test_a_local_job_with_no_folder_is_refused_rather_than_read_from_anywhere(
    sessions, tmp_path, monkeypatch, planted
):
    # The worker's working directory holds a model: a job without a folder must not read it.
    monkeypatch.chdir(planted)
    add_jobs(sessions, 1, prefix="me/nowhere", source=JobSource.LOCAL, local_path=None)
    worker = Worker(sessions, WorkerConfig(validate=False), name=NAME)
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.FAILED
    with sessions() as session:
        error = session.get(Job, job.id).last_error
    assert error == f"job {job.id}: a local job with no folder to read"


def test_a_model_without_super_weights_succeeds_and_says_so(sessions, tmp_path, log):
    from workers.fixtures.planted import build_planted_model

    plain = build_planted_model("llama", tmp_path / "plain", plants=[], add_dead=False).path
    service.submit(sessions, str(plain), model_id="local/plain")
    worker = Worker(sessions, WorkerConfig(validate=False), name=NAME)
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.SUCCEEDED
    assert re.fullmatch(
        rf"job {job.id}: succeeded in \d+\.\d s \(no super weights\)", worker_messages(log)[-1]
    ), worker_messages(log)[-1]


# --- stop signals ----------------------------------------------------------------------------


@pytest.fixture
def signal_handlers():
    """The worker's handlers for the test; the previous ones back after it."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


def _signal(number: int) -> None:
    os.kill(os.getpid(), number)
    time.sleep(0.5)  # the handler runs in this (the main) thread, at the next instruction


def test_a_first_signal_asks_to_stop_and_a_second_stops_now(sessions, signal_handlers, log):
    worker = Worker(sessions, WorkerConfig(), name=NAME)
    worker.install_signal_handlers()
    _signal(signal.SIGTERM)
    assert worker.stop_requested.is_set()
    assert worker_messages(log) == [
        f"worker {NAME}: SIGTERM received; finishing the current job, then stopping "
        "(send it again to stop now)"
    ]
    with pytest.raises(StopNow):
        _signal(signal.SIGINT)


def test_ctrl_c_is_a_stop_signal_too(sessions, signal_handlers, log):
    worker = Worker(sessions, WorkerConfig(), name=NAME)
    worker.install_signal_handlers()
    _signal(signal.SIGINT)
    assert worker.stop_requested.is_set()
    assert "SIGINT received" in worker_messages(log)[0]


def test_a_job_running_at_the_first_signal_ends_and_the_worker_stops(
    sessions, refused_jobs, signal_handlers
):
    refused_jobs(2)
    worker = Worker(sessions, WorkerConfig(poll_seconds=0.05), name=NAME)
    worker.install_signal_handlers()
    fetch = worker._fetch

    def fetch_after_a_signal(job):
        _signal(signal.SIGTERM)
        return fetch(job)

    worker._fetch = fetch_after_a_signal
    assert worker.run() == 1
    assert _states(sessions) == [(JobState.FAILED, 1), (JobState.QUEUED, 0)]


def test_a_second_signal_hands_the_running_job_back(sessions, refused_jobs, signal_handlers, log):
    refused_jobs(1)
    worker = Worker(sessions, WorkerConfig(poll_seconds=0.05), name=NAME)
    worker.install_signal_handlers()

    def fetch_through_two_signals(job):
        _signal(signal.SIGTERM)
        _signal(signal.SIGTERM)
        raise AssertionError("the second signal did not stop the job")

    worker._fetch = fetch_through_two_signals
    assert worker.run() == 0
    assert _states(sessions) == [(JobState.QUEUED, 0)]
    assert _heartbeats_running() == []
    messages = worker_messages(log)
    assert "job 1: handed back to the queue" in messages
    assert messages[-1] == f"worker {NAME} stopped after 0 job(s)"


def test_ctrl_c_without_handlers_hands_the_job_back_too(sessions, refused_jobs):
    refused_jobs(1)
    worker = Worker(sessions, WorkerConfig(), name=NAME)
    job, lease = _claim(worker)

    def interrupted(job):
        raise KeyboardInterrupt

    worker._fetch = interrupted
    with pytest.raises(StopNow):
        worker.process(job, lease)
    assert _states(sessions) == [(JobState.QUEUED, 0)]


# --- the quantization check ------------------------------------------------------------------


def test_the_quantization_check_is_recorded_with_the_analysis(sessions, planted, log):
    submitted = service.submit(sessions, str(planted), model_id="local/quantized").job
    worker = Worker(sessions, WorkerConfig(quantize_check=True, lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    state, wall = _process(worker, job, lease)
    assert state == JobState.SUCCEEDED
    with sessions() as session:
        done = session.get(Job, submitted.id)
        (revision,) = lookup(session, "local/quantized", submitted.revision)
        check = revision.quantization_check
        verified = {
            (sw.tensor, sw.layer, sw.module, sw.row, sw.col, sw.value)
            for sw in revision.super_weights
            if sw.state == "verified"
        }
    assert check is not None and check["kept_from"] == "detection"
    # The super weights the analysis has just verified are the ones kept, values and all.
    fields = ("tensor", "layer", "module", "row", "col", "value")
    kept = {tuple(k[field] for field in fields) for k in check["kept"]}
    assert verified and kept == verified
    assert done.timings["quantize_check"] > 0
    _assert_timings(done.timings, wall, ("fetch", "analyse", "quantize_check"))
    messages = worker_messages(log)
    assert f"job {job.id}: quantization check, keeping {len(verified)} super weight(s)" in messages
    # The check reports its progress on the job like the analysis.
    assert any(m.startswith(f"job {job.id}: quantize (") for m in messages), messages


def broken_quantization_check(*args, **kwargs):
    """A quantization check that fails (module level: it runs in the analysis's child process,
    which receives it by reference)."""
    raise RuntimeError("a broken check")


def test_a_failing_quantization_check_costs_the_analysis_nothing(
    sessions, planted, log, monkeypatch
):
    from workers.science.pipeline import quantize

    monkeypatch.setattr(quantize, "quantize_check", broken_quantization_check)
    submitted = service.submit(sessions, str(planted), model_id="local/unquantized").job
    worker = Worker(
        sessions, WorkerConfig(quantize_check=True, validate=False, lease_seconds=60), name=NAME
    )
    job, lease = _claim(worker)
    assert worker.process(job, lease) == JobState.SUCCEEDED
    with sessions() as session:
        done = session.get(Job, submitted.id)
        (revision,) = lookup(session, "local/unquantized", submitted.revision)
        assert revision.quantization_check is None
    assert "quantize_check" not in done.timings
    (error,) = [r for r in log.records if r.levelno == logging.ERROR]
    assert error.getMessage() == (
        f"job {job.id}: quantization check failed, the analysis is recorded without it: "
        "the analysis failed: RuntimeError: a broken check"
    )
    assert error.exc_info[0] is isolation.AnalysisFailed


def test_a_mixture_of_experts_job_records_its_super_weight_and_super_expert(sessions, tmp_path):
    """A worker analyses a planted MoE folder (one tensor per expert) with validation: the
    registry then holds the verified super weight inside its expert and the verified super
    expert, each with its evidence."""
    from workers.fixtures.planted_moe import build_planted_moe

    planted = build_planted_moe("qwen3_moe", tmp_path / "moe")
    submitted = service.submit(sessions, str(planted.path), model_id="local/moe").job
    worker = Worker(sessions, WorkerConfig(validate=True, lease_seconds=60), name=NAME)
    job, lease = _claim(worker)
    state, _ = _process(worker, job, lease)
    assert state == JobState.SUCCEEDED
    with sessions() as session:
        (revision,) = lookup(session, "local/moe", submitted.revision)
        verified = [sw for sw in revision.super_weights if sw.state == "verified"]
        experts = [(se.layer, se.expert, se.state) for se in revision.super_experts]
        validation = revision.super_experts[0].evidence["validation"]
    assert [(sw.layer, sw.expert, sw.row, sw.col) for sw in verified] == [
        (planted.layer, planted.super_expert, planted.row, planted.col)
    ]
    assert experts == [(planted.layer, planted.super_expert, "verified")]
    assert validation["pruned"]["interval"]["low"] >= 2.0
