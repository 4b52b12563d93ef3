"""A fine-tune analysed before its base is checked once the base is: recording a revision with
verified coordinates queues each fine-tune of it whose lineage check is missing or out of date
(registry.jobs.lineage_rechecks), the worker runs it, and the fine-tune's page then says whether
it keeps its base's super weights. End to end through a Hub over HTTP (tests/fake_hub.py); the
rules on both databases."""

import pytest
from sqlalchemy import func, select

from registry.database import transaction
from registry.jobs import queue
from registry.jobs import service as jobs_service
from registry.jobs.lineage_rechecks import RECHECK_SUBMITTER, out_of_date, queue_rechecks
from registry.jobs.models import Job, JobSource, JobState
from registry.superweights.service import (
    lineage_base,
    lookup,
    record_report,
    revision_kind_of,
)
from tests.helpers import CONTENT, SHA_A, worker_messages
from tests.lineage import base_coordinates, fine_tune
from workers.contract.lineage import BaseExpert, LineageBase, LineageCheck
from workers.contract.report import Report
from workers.fixtures.planted import build_planted_model
from workers.science.pipeline.lineage import Checked, check_lineage
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse
from workers.worker.loop import Worker, WorkerConfig

BASE = "acme/base"
FINE_TUNE = "acme/ft-keeps"


def _work(sessions) -> None:
    Worker(sessions, WorkerConfig(once=True, lease_seconds=60, poll_seconds=0.1)).run()


def _jobs(sessions, model_id: str) -> list[Job]:
    with sessions() as session:
        return list(session.scalars(select(Job).where(Job.model_id == model_id).order_by(Job.id)))


def test_a_fine_tune_analysed_before_its_base_is_checked_once_the_base_is(
    sessions, fake_hub, tmp_path, log
):
    base = build_planted_model("llama", tmp_path / "base", num_layers=2)
    base_sha = fake_hub.add_repo(BASE, base.path)
    ft_sha = fake_hub.add_repo(
        FINE_TUNE, fine_tune(base, tmp_path / "keeps", keeps=True), base_model=BASE
    )

    # The fine-tune first: its base has nothing verified yet, so there is nothing to check.
    jobs_service.submit(sessions, FINE_TUNE)
    _work(sessions)
    with sessions() as session:
        (rev,) = lookup(session, FINE_TUNE)
        assert (rev.base_model, rev.lineage_check) == (BASE, None)
    assert any(f"base model {BASE} has no verified coordinates" in m for m in worker_messages(log))

    # The base: its analysis queues the fine-tune again, and the same worker run checks it.
    jobs_service.submit(sessions, BASE)
    _work(sessions)
    first, recheck = _jobs(sessions, FINE_TUNE)
    assert (recheck.submitted_by, recheck.revision, recheck.source) == (
        RECHECK_SUBMITTER,
        ft_sha,
        JobSource.HUB,
    )
    assert recheck.state == JobState.SUCCEEDED, recheck.last_error
    assert recheck.timings["lineage_check"] > 0
    with sessions() as session:
        (rev,) = lookup(session, FINE_TUNE)
        check = LineageCheck.model_validate(rev.lineage_check)
    assert (check.base_model, check.base_revision) == (BASE, base_sha)
    assert [c.outcome for c in check.coordinates] == ["kept", "kept"]
    (base_job,) = _jobs(sessions, BASE)
    assert (
        f"job {base_job.id}: fine-tune {FINE_TUNE}@{ft_sha[:12]} queued as job {recheck.id} for "
        "its lineage check (no lineage check yet)" in worker_messages(log)
    )

    # The base analysed again, the same coordinates verified: the check is up to date.
    jobs_service.submit(sessions, BASE, force=True)
    _work(sessions)
    assert len(_jobs(sessions, BASE)) == 2
    assert len(_jobs(sessions, FINE_TUNE)) == 2


# --- the rules, on SQLite and PostgreSQL -----------------------------------------------------


@pytest.fixture(scope="module")
def planted_report(tmp_path_factory) -> Report:
    """A two-layer planted Llama's report: two verified coordinates."""
    path = build_planted_model("llama", tmp_path_factory.mktemp("base") / "llama", num_layers=2)
    return analyse(path.path, AnalysisOptions())


SHAS = {name: c * 40 for name, c in (("missing", "b"), ("current", "c"), ("old", "d"))}


def _record(session, model_id, revision, report, **lineage) -> None:
    record_report(
        session,
        model_id=model_id,
        revision=revision,
        revision_kind=revision_kind_of(revision),
        report=report,
        **lineage,
    )


def test_what_is_queued_again(db_sessions, planted_report):
    report = planted_report
    with transaction(db_sessions) as session:
        _record(session, BASE, SHA_A, report)
        base = lineage_base(session, BASE)
        assert base is not None and len(base.coordinates) == 2
        # Each coordinate judged by the fine-tune's own detection (the same planted weights).
        current = check_lineage(report, base, ablate=lambda _rest: Checked())
        old = current.model_copy(update={"base_revision": "e" * 40})
        _record(session, "acme/ft-missing", SHAS["missing"], report, base_model=BASE)
        _record(session, "acme/ft-current", SHAS["current"], report, base_model=BASE,
                lineage_check=current)  # fmt: skip
        _record(session, "acme/ft-old", SHAS["old"], report, base_model=BASE, lineage_check=old)
        # Local weights no job of this registry read: nowhere to read them from again.
        _record(session, "local/ft-no-folder", CONTENT, report, base_model=BASE)
        _record(session, "acme/not-a-fine-tune", "f" * 40, report)

    with transaction(db_sessions) as session:
        queued = queue_rechecks(session, BASE)
    assert [(r.model_id, r.revision, r.created, r.reason) for r in queued] == [
        ("acme/ft-missing", SHAS["missing"], True, "no lineage check yet"),
        ("acme/ft-old", SHAS["old"], True, f"checked against eeeeeeeeeeee, not {SHA_A[:12]}"),
    ]
    with db_sessions() as session:
        jobs = {job.model_id: job for job in session.scalars(select(Job))}
    assert set(jobs) == {"acme/ft-missing", "acme/ft-old"}
    for job in jobs.values():
        assert (job.submitted_by, job.source, job.state) == (
            RECHECK_SUBMITTER,
            JobSource.HUB,
            JobState.QUEUED,
        )

    # Asked again while they wait: the same jobs, none added.
    with transaction(db_sessions) as session:
        again = queue_rechecks(session, BASE)
    assert [(r.job_id, r.created) for r in again] == [(r.job_id, False) for r in queued]
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2


def test_a_local_fine_tune_is_read_again_from_the_folder_its_job_read(
    db_sessions, planted_report, tmp_path
):
    folder = tmp_path / "ft"
    folder.mkdir()
    with transaction(db_sessions) as session:
        _record(session, BASE, SHA_A, planted_report)
        job, _ = queue.enqueue(
            session,
            model_id="local/ft",
            revision=CONTENT,
            source=JobSource.LOCAL,
            local_path=str(folder),
            max_attempts=1,
        )
        job.state = JobState.SUCCEEDED
        _record(session, "local/ft", CONTENT, planted_report, base_model=BASE)
    with transaction(db_sessions) as session:
        (recheck,) = queue_rechecks(session, BASE)
        new = session.get(Job, recheck.job_id)
        assert new is not None and new.id != job.id
        assert (new.source, new.local_path) == (JobSource.LOCAL, str(folder))


def test_a_base_without_verified_coordinates_queues_nothing(db_sessions, planted_report):
    nothing = planted_report.model_copy(update={"super_weights": []})
    with transaction(db_sessions) as session:
        _record(session, BASE, SHA_A, nothing)
        _record(session, "acme/ft", SHAS["missing"], planted_report, base_model=BASE)
        assert queue_rechecks(session, "acme/never-analysed") == []
        assert queue_rechecks(session, BASE) == []


def test_out_of_date_says_why(planted_report):
    base = LineageBase(model_id=BASE, revision=SHA_A, coordinates=base_coordinates(planted_report))
    checked = [{"tensor": c.tensor, "index": c.index} for c in base.coordinates]
    check = {"base_revision": SHA_A, "coordinates": checked}
    assert out_of_date(check, base) is None
    assert out_of_date(None, base) == "no lineage check yet"
    assert out_of_date({**check, "base_revision": "e" * 40}, base) == (
        f"checked against eeeeeeeeeeee, not {SHA_A[:12]}"
    )
    assert out_of_date({**check, "coordinates": checked[:1]}, base) == (
        "the base's verified coordinates changed"
    )
    # A mixture-of-experts base whose super expert was verified since the check.
    with_expert = base.model_copy(
        update={"super_experts": [BaseExpert(layer=1, expert=3, module="mlp.experts")]}
    )
    assert out_of_date(check, with_expert) == "the base's verified super experts changed"
    checked_expert = {**check, "super_experts": [{"layer": 1, "expert": 3}]}
    assert out_of_date(checked_expert, with_expert) is None
