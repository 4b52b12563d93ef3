"""The queue's guarantees, on SQLite and PostgreSQL: a job is claimed by one worker at a time, a
worker whose lease lapsed cannot write anything, failures back off and end, duplicates don't
exist."""

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from registry import errors
from registry.clock import as_utc
from registry.jobs import queue
from registry.jobs.models import Job, JobSource, JobState
from registry.jobs.queue import LeaseLost, write_transaction
from registry.superweights.models import ModelRevision, SuperWeight
from registry.superweights.service import record_report
from tests.helpers import CONTENT, SHA, SHA_A, add_jobs, tiny_report

LEASE = 10.0


def _claim(db_sessions, owner: str, now=None):
    with write_transaction(db_sessions) as session:
        return queue.claim(session, owner=owner, lease_seconds=LEASE, now=now)


def _now(db_sessions):
    with db_sessions() as session:
        return queue.database_now(session)


def _job(db_sessions, job_id: int) -> Job:
    with db_sessions() as session:
        return session.get(Job, job_id)


def _recorder(model_id: str):
    def record(session):
        return record_report(
            session, model_id=model_id, revision=SHA, revision_kind="commit", report=tiny_report()
        ).id

    return record


def test_claim_takes_the_oldest_job_and_leases_it(db_sessions):
    first, second = add_jobs(db_sessions, 2)
    job, lease = _claim(db_sessions, "w1")
    assert job.id == first and lease == queue.Lease(first, "w1", 1)
    stored = _job(db_sessions, first)
    assert stored.state == JobState.RUNNING and stored.lease_owner == "w1"
    assert stored.attempts == 1 and stored.lease_expires_at is not None
    job2, _ = _claim(db_sessions, "w2")
    assert job2.id == second
    assert _claim(db_sessions, "w3") is None


def test_concurrent_claimers_never_share_a_job(db_sessions):
    jobs = add_jobs(db_sessions, 30)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        mine = claimed.setdefault(name, [])
        try:
            while (got := _claim(db_sessions, name)) is not None:
                mine.append(got[0].id)
                time.sleep(0.005)  # "work", so that the others get a turn
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    every = [j for ids in claimed.values() for j in ids]
    assert sorted(every) == sorted(jobs)  # each job exactly once
    assert len([ids for ids in claimed.values() if ids]) > 1  # and the work was shared


def test_a_lapsed_lease_cannot_complete_and_records_nothing(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    t0 = _now(db_sessions)
    _, stale = _claim(db_sessions, "slow", now=t0)
    # The lease lapses; another worker takes the job over.
    later = t0 + timedelta(seconds=LEASE + 1)
    _, fresh = _claim(db_sessions, "fast", now=later)
    assert fresh.attempt == 2

    with pytest.raises(LeaseLost), write_transaction(db_sessions) as session:
        queue.complete(session, stale, record=_recorder("org/model-0"), timings={}, now=later)
    with write_transaction(db_sessions) as session:
        assert not queue.heartbeat(session, stale, lease_seconds=LEASE, now=later)
        with pytest.raises(LeaseLost):
            queue.fail(session, stale, "late failure", now=later)
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(ModelRevision)) == 0

    with write_transaction(db_sessions) as session:
        queue.complete(
            session, fresh, record=_recorder("org/model-0"), timings={"fetch": 1.0}, now=later
        )
    job = _job(db_sessions, job_id)
    assert job.state == JobState.SUCCEEDED and job.lease_owner is None
    assert job.result_revision_id is not None and job.timings == {"fetch": 1.0}


def test_an_expired_lease_cannot_complete_even_before_a_reclaim(db_sessions):
    add_jobs(db_sessions, 1)
    t0 = _now(db_sessions)
    _, lease = _claim(db_sessions, "w", now=t0)
    with pytest.raises(LeaseLost), write_transaction(db_sessions) as session:
        queue.complete(
            session,
            lease,
            record=_recorder("org/model-0"),
            timings={},
            now=t0 + timedelta(seconds=LEASE + 0.5),
        )


def test_heartbeat_extends_the_lease(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    t0 = _now(db_sessions)
    _, lease = _claim(db_sessions, "w", now=t0)
    with write_transaction(db_sessions) as session:
        assert queue.heartbeat(session, lease, lease_seconds=LEASE, now=t0 + timedelta(seconds=8))
    # Past the first lease but inside the extended one: still ours, not claimable.
    assert _claim(db_sessions, "other", now=t0 + timedelta(seconds=12)) is None
    with write_transaction(db_sessions) as session:
        queue.complete(
            session,
            lease,
            record=_recorder("org/model-0"),
            timings={},
            now=t0 + timedelta(seconds=12),
        )
    assert _job(db_sessions, job_id).state == JobState.SUCCEEDED


def test_the_result_rows_commit_with_the_completion_or_not_at_all(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    _, lease = _claim(db_sessions, "w")

    def broken(session):
        _recorder("org/model-0")(session)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError), write_transaction(db_sessions) as session:
        queue.complete(session, lease, record=broken, timings={})
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(SuperWeight)) == 0
        assert session.get(Job, job_id).state == JobState.RUNNING  # still ours, can still fail


def test_failures_back_off_then_fail_after_max_attempts(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1, max_attempts=3)
    base = 10.0
    now = _now(db_sessions)
    for attempt in (1, 2):
        _, lease = _claim(db_sessions, "w", now=now)
        assert lease.attempt == attempt
        with write_transaction(db_sessions) as session:
            state = queue.fail(
                session, lease, ConnectionError("hub timed out"), backoff_base_seconds=base, now=now
            )
        assert state == JobState.QUEUED
        delay = base * 2 ** (attempt - 1)
        job = _job(db_sessions, job_id)
        assert job.last_error == "ConnectionError: hub timed out"
        assert as_utc(job.not_before) == now + timedelta(seconds=delay)
        # Not before the backoff is over.
        assert _claim(db_sessions, "w", now=now + timedelta(seconds=delay - 1)) is None
        now = now + timedelta(seconds=delay)
    _, lease = _claim(db_sessions, "w", now=now)
    with write_transaction(db_sessions) as session:
        assert queue.fail(session, lease, "still timing out", now=now) == JobState.FAILED
    job = _job(db_sessions, job_id)
    assert (job.state, job.attempts, job.last_error) == (JobState.FAILED, 3, "still timing out")
    assert job.finished_at is not None
    assert _claim(db_sessions, "w", now=now + timedelta(days=1)) is None


def test_a_permanent_failure_fails_at_once(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1, max_attempts=3)
    _, lease = _claim(db_sessions, "w")
    with write_transaction(db_sessions) as session:
        state = queue.fail(
            session, lease, "pickle-only checkpoint (never unpickled)", permanent=True
        )
    assert state == JobState.FAILED
    job = _job(db_sessions, job_id)
    assert job.attempts == 1 and job.last_error == "pickle-only checkpoint (never unpickled)"


def test_a_job_lost_on_its_last_attempt_fails_instead_of_looping(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1, max_attempts=2)
    now = _now(db_sessions)
    for _ in range(2):  # two workers die holding it
        assert _claim(db_sessions, "doomed", now=now) is not None
        now += timedelta(seconds=LEASE + 1)
    assert _claim(db_sessions, "w", now=now) is None
    job = _job(db_sessions, job_id)
    assert job.state == JobState.FAILED and job.last_error == queue.ABANDONED_REASON


def test_release_hands_the_job_back_without_using_an_attempt(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    _, lease = _claim(db_sessions, "stopping")
    with write_transaction(db_sessions) as session:
        assert queue.release(session, lease)
    job = _job(db_sessions, job_id)
    assert (job.state, job.attempts, job.lease_owner) == (JobState.QUEUED, 0, None)
    _, again = _claim(db_sessions, "next")
    assert again.attempt == 1


def test_a_revision_has_one_active_job(db_sessions):
    (first,) = add_jobs(db_sessions, 1)
    with write_transaction(db_sessions) as session:
        job, created = queue.enqueue(
            session, model_id="org/model-0", revision=SHA, source=JobSource.HUB, max_attempts=3
        )
    assert (job.id, created) == (first, False)
    # Succeeded: still the same job (its result is in the registry).
    _, lease = _claim(db_sessions, "w")
    with write_transaction(db_sessions) as session:
        queue.complete(session, lease, record=_recorder("org/model-0"), timings={})
    with write_transaction(db_sessions) as session:
        job, created = queue.enqueue(
            session, model_id="org/model-0", revision=SHA, source=JobSource.HUB, max_attempts=3
        )
    assert (job.id, created, job.state) == (first, False, JobState.SUCCEEDED)


def test_a_failed_revision_can_be_submitted_again(db_sessions):
    (first,) = add_jobs(db_sessions, 1)
    _, lease = _claim(db_sessions, "w")
    with write_transaction(db_sessions) as session:
        queue.fail(session, lease, "refused", permanent=True)
    with write_transaction(db_sessions) as session:
        job, created = queue.enqueue(
            session, model_id="org/model-0", revision=SHA, source=JobSource.HUB, max_attempts=3
        )
    assert created and job.id != first


def test_concurrent_submissions_insert_one_job(db_sessions):
    results: list[tuple[int, bool]] = []
    barrier = threading.Barrier(6)
    lock = threading.Lock()

    def submitter() -> None:
        barrier.wait()
        with write_transaction(db_sessions) as session:
            job, created = queue.enqueue(
                session, model_id="org/racy", revision=SHA, source=JobSource.HUB, max_attempts=3
            )
            job_id = job.id
        with lock:
            results.append((job_id, created))

    threads = [threading.Thread(target=submitter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_progress_is_fenced_by_the_lease_and_reset_by_a_new_attempt(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    t0 = _now(db_sessions)
    _, stale = _claim(db_sessions, "slow", now=t0)
    with write_transaction(db_sessions) as session:
        assert queue.report_progress(
            session, stale, stage="detect", done=3, total=30, timings={"load": 1.5}, now=t0
        )
    job = _job(db_sessions, job_id)
    assert (job.stage, job.progress_done, job.progress_total) == ("detect", 3, 30)
    assert job.timings == {"load": 1.5}

    # The lease lapses and another worker takes the job over: it starts from no progress, and
    # the old owner's progress writes change nothing.
    later = t0 + timedelta(seconds=LEASE + 1)
    _, fresh = _claim(db_sessions, "fast", now=later)
    job = _job(db_sessions, job_id)
    assert (job.stage, job.progress_done, job.progress_total) == (None, None, None)
    with write_transaction(db_sessions) as session:
        assert not queue.report_progress(session, stale, stage="score", done=9, total=9, now=later)
        assert queue.report_progress(session, fresh, stage="fetch", done=0, total=1, now=later)
    job = _job(db_sessions, job_id)
    assert (job.stage, job.progress_done, job.progress_total) == ("fetch", 0, 1)


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------


def test_a_submission_is_stored_as_given(db_sessions):
    now = _now(db_sessions) - timedelta(minutes=5)
    with write_transaction(db_sessions) as session:
        job, created = queue.enqueue(
            session,
            model_id="org/local",
            revision=CONTENT,
            source=JobSource.LOCAL,
            max_attempts=4,
            requested_revision="main",
            local_path="/models/local",
            submitted_by="alice",
            now=now,
        )
        job_id = job.id
    assert created
    job = _job(db_sessions, job_id)
    assert (job.model_id, job.revision, job.requested_revision) == ("org/local", CONTENT, "main")
    assert (job.source, job.local_path, job.submitted_by) == ("local", "/models/local", "alice")
    assert (job.state, job.attempts, job.max_attempts) == (JobState.QUEUED, 0, 4)
    assert as_utc(job.created_at) == now and as_utc(job.not_before) == now
    assert (job.timings, job.fetch) == ({}, {})


def test_a_submission_without_a_time_is_stamped_by_the_database_clock(db_sessions):
    before = _now(db_sessions)
    (job_id,) = add_jobs(db_sessions, 1)
    after = _now(db_sessions)
    job = _job(db_sessions, job_id)
    assert before <= as_utc(job.created_at) <= after
    assert as_utc(job.not_before) == as_utc(job.created_at)


def test_other_revisions_and_other_models_get_jobs_of_their_own(db_sessions):
    (first,) = add_jobs(db_sessions, 1)
    for model_id, revision in (("org/model-0", SHA_A), ("org/other", SHA)):
        with write_transaction(db_sessions) as session:
            job, created = queue.enqueue(
                session, model_id=model_id, revision=revision, source=JobSource.HUB, max_attempts=3
            )
            assert created and job.id != first


def test_a_conflict_that_is_not_a_duplicate_is_raised(db_sessions):
    # Not a second submission of the revision (there is none) but a row the database refuses:
    # the error must surface rather than be taken for a lost race.
    with pytest.raises(IntegrityError), write_transaction(db_sessions) as session:
        queue.enqueue(session, model_id="org/model", revision=SHA, source="ftp", max_attempts=3)


def test_claim_takes_the_oldest_submission_not_the_lowest_id(db_sessions):
    # Two submitters whose turns come at once (the same fair-share number): the older first.
    t0 = _now(db_sessions)
    with write_transaction(db_sessions) as session:
        newer, _ = queue.enqueue(
            session,
            model_id="org/newer",
            revision=SHA,
            source=JobSource.HUB,
            max_attempts=3,
            now=t0,
            submitted_by="token:a",
        )
        older, _ = queue.enqueue(
            session,
            model_id="org/older",
            revision=SHA,
            source=JobSource.HUB,
            max_attempts=3,
            now=t0 - timedelta(minutes=1),
            submitted_by="token:b",
        )
        newer_id, older_id = newer.id, older.id
    assert newer_id < older_id
    assert _claim(db_sessions, "w", now=t0)[0].id == older_id
    assert _claim(db_sessions, "w", now=t0)[0].id == newer_id


def test_a_claim_stamps_the_heartbeat_and_keeps_the_first_start(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    t0 = _now(db_sessions)
    _claim(db_sessions, "w1", now=t0)
    job = _job(db_sessions, job_id)
    assert as_utc(job.heartbeat_at) == t0 and as_utc(job.started_at) == t0
    later = t0 + timedelta(seconds=LEASE + 1)
    _claim(db_sessions, "w2", now=later)
    job = _job(db_sessions, job_id)
    # A takeover is a new attempt of the same job: it started when it was first claimed.
    assert as_utc(job.heartbeat_at) == later and as_utc(job.started_at) == t0


def test_a_claim_returns_the_job_as_claimed_even_if_the_session_had_read_it(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    with write_transaction(db_sessions) as session:
        assert session.get(Job, job_id).state == JobState.QUEUED
        job, lease = queue.claim(session, owner="w", lease_seconds=LEASE)
        assert (job.state, job.attempts, job.lease_owner) == (JobState.RUNNING, 1, "w")
        assert lease == queue.Lease(job_id, "w", 1)


def test_at_the_instant_a_lease_runs_out_its_owner_may_not_write_and_nobody_may_claim(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1, max_attempts=1)
    t0 = _now(db_sessions)
    _, lease = _claim(db_sessions, "w", now=t0)
    expiry = t0 + timedelta(seconds=LEASE)
    with write_transaction(db_sessions) as session:
        assert not queue.heartbeat(session, lease, lease_seconds=LEASE, now=expiry)
    # Not claimable yet, and (on its last attempt) not yet given up as abandoned either.
    assert _claim(db_sessions, "other", now=expiry) is None
    assert _job(db_sessions, job_id).state == JobState.RUNNING


def test_at_the_instant_a_lease_runs_out_a_job_with_attempts_left_is_not_claimable(db_sessions):
    add_jobs(db_sessions, 1, max_attempts=3)
    t0 = _now(db_sessions)
    _claim(db_sessions, "w", now=t0)
    expiry = t0 + timedelta(seconds=LEASE)
    assert _claim(db_sessions, "other", now=expiry) is None
    assert _claim(db_sessions, "other", now=expiry + timedelta(microseconds=1))[1].attempt == 2


def test_a_job_still_heartbeating_on_its_last_attempt_is_not_given_up(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1, max_attempts=1)
    t0 = _now(db_sessions)
    _claim(db_sessions, "w", now=t0)
    assert _claim(db_sessions, "other", now=t0 + timedelta(seconds=1)) is None
    job = _job(db_sessions, job_id)
    assert (job.state, job.lease_owner) == (JobState.RUNNING, "w")


def test_an_abandoned_job_is_failed_with_its_lease_cleared(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1, max_attempts=1)
    t0 = _now(db_sessions)
    _claim(db_sessions, "doomed", now=t0)
    later = t0 + timedelta(seconds=LEASE + 1)
    with write_transaction(db_sessions) as session:
        assert queue.fail_abandoned(session, now=later) == 1
    job = _job(db_sessions, job_id)
    assert (job.state, job.lease_owner, job.lease_expires_at) == (JobState.FAILED, None, None)
    assert as_utc(job.finished_at) == later
    # Without a time it uses the database's clock, and finds nothing more to do.
    with write_transaction(db_sessions) as session:
        assert queue.fail_abandoned(session) == 0


def test_a_lease_fences_its_own_job_owner_and_attempt_only(db_sessions):
    first, second = add_jobs(db_sessions, 2)
    t0 = _now(db_sessions)
    _, lease1 = _claim(db_sessions, "w", now=t0)
    _, lease2 = _claim(db_sessions, "w", now=t0)  # one owner holding two jobs
    assert (lease1.job_id, lease2.job_id) == (first, second)
    with write_transaction(db_sessions) as session:
        queue.complete(session, lease1, record=_recorder("org/model-0"), timings={}, now=t0)
    assert _job(db_sessions, second).state == JobState.RUNNING
    # Another name with the same job and attempt is not the owner.
    with write_transaction(db_sessions) as session:
        forged = queue.Lease(second, "intruder", lease2.attempt)
        assert not queue.heartbeat(session, forged, lease_seconds=LEASE, now=t0)
    # The same owner's earlier attempt is fenced out by its own later claim.
    later = t0 + timedelta(seconds=LEASE + 1)
    _, again = _claim(db_sessions, "w", now=later)
    assert (again.job_id, again.attempt) == (second, 2)
    with write_transaction(db_sessions) as session:
        assert not queue.heartbeat(session, lease2, lease_seconds=LEASE, now=later)
        assert queue.heartbeat(session, again, lease_seconds=LEASE, now=later)


def test_heartbeat_and_progress_use_the_database_clock_when_given_no_time(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    _, lease = _claim(db_sessions, "w")
    before = _now(db_sessions)
    with write_transaction(db_sessions) as session:
        assert queue.heartbeat(session, lease, lease_seconds=LEASE)
        assert queue.report_progress(session, lease, stage="fetch", done=1, total=2)
    after = _now(db_sessions)
    job = _job(db_sessions, job_id)
    assert before <= as_utc(job.heartbeat_at) <= after
    assert as_utc(job.lease_expires_at) == as_utc(job.heartbeat_at) + timedelta(seconds=LEASE)


def test_completion_and_failure_record_the_fetch_when_given_and_keep_it_otherwise(db_sessions):
    done_id, failed_id, plain_id = add_jobs(db_sessions, 3)
    fetched = {"downloaded_bytes": 123, "files": ["model.safetensors"]}
    leases = [_claim(db_sessions, "w")[1] for _ in range(3)]
    with write_transaction(db_sessions) as session:
        queue.complete(
            session, leases[0], record=_recorder("org/model-0"), timings={}, fetch=fetched
        )
        queue.fail(session, leases[1], "refused", permanent=True, fetch=fetched)
        queue.complete(session, leases[2], record=_recorder("org/model-2"), timings={})
    assert _job(db_sessions, done_id).fetch == fetched
    assert _job(db_sessions, failed_id).fetch == fetched
    assert _job(db_sessions, plain_id).fetch == {}


def test_lease_lost_says_which_job(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    t0 = _now(db_sessions)
    _, lease = _claim(db_sessions, "w", now=t0)
    later = t0 + timedelta(seconds=LEASE + 1)
    with pytest.raises(LeaseLost, match=f"job {job_id}: lease lost before completion"):
        with write_transaction(db_sessions) as session:
            queue.complete(session, lease, record=_recorder("x/y"), timings={}, now=later)
    with pytest.raises(LeaseLost, match=f"job {job_id}: lease lost before recording the failure"):
        with write_transaction(db_sessions) as session:
            queue.fail(session, lease, "late", now=later)


def test_postpone_hands_the_job_back_until_the_delay_is_over_and_says_why(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    _, lease = _claim(db_sessions, "w")
    before = _now(db_sessions)
    with write_transaction(db_sessions) as session:
        assert queue.postpone(session, lease, ConnectionError("hub down"), delay_seconds=60)
    after = _now(db_sessions)
    job = _job(db_sessions, job_id)
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)
    assert (job.lease_owner, job.lease_expires_at) == (None, None)
    assert job.last_error == "waiting to retry: ConnectionError: hub down"
    not_before = as_utc(job.not_before)
    assert before + timedelta(seconds=60) <= not_before <= after + timedelta(seconds=60)
    assert _claim(db_sessions, "w2", now=not_before - timedelta(seconds=1)) is None
    assert _claim(db_sessions, "w2", now=not_before)[1] == queue.Lease(job_id, "w2", 1)
    # A postponement by a worker that lost the lease changes nothing.
    with write_transaction(db_sessions) as session:
        assert not queue.postpone(session, lease, "late", delay_seconds=60)


def test_release_clears_the_lease(db_sessions):
    (job_id,) = add_jobs(db_sessions, 1)
    _, lease = _claim(db_sessions, "w")
    with write_transaction(db_sessions) as session:
        assert queue.release(session, lease)
    job = _job(db_sessions, job_id)
    assert (job.lease_owner, job.lease_expires_at) == (None, None)


def test_one_line_flattens_and_caps_a_reason():
    assert errors.one_line("a\n  b\tc") == "a b c"
    assert errors.one_line(TimeoutError()) == "TimeoutError: TimeoutError"
    exact = "x" * errors.MAX_ERROR_CHARS
    assert errors.one_line(exact) == exact
    capped = errors.one_line("y" * (errors.MAX_ERROR_CHARS + 1))
    assert capped == "y" * (errors.MAX_ERROR_CHARS - 1) + "…"
