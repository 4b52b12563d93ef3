"""The lineage check is an optional step of a job: a base the registry holds no verified
coordinate of is stored without a check, and a check that fails costs the analysis nothing (it
is recorded without the check, and the failure logged). Local folders, whose model card is
their own README.md. (The check itself, end to end through a Hub: tests/test_lineage.py.)"""

import logging
import shutil

from registry.database import transaction
from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.superweights.service import lookup, record_report, revision_kind_of
from tests.helpers import SHA_A, worker_messages
from workers.science.pipeline import lineage as science_lineage
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse
from workers.worker.loop import Worker, WorkerConfig

BASE = "acme/base"
UNKNOWN_BASE = "acme/not-analysed"


def _card(base: str) -> str:
    return f"---\nbase_model: {base}\nlicense: mit\n---\n# A fine-tune of {base}\n"


def test_no_check_without_a_verified_base_and_a_failed_check_costs_nothing(
    sessions, planted_two_layers, tmp_path, monkeypatch, log
):
    # The registry holds the base's analysis (the planted weights, verified).
    with transaction(sessions) as session:
        record_report(
            session,
            model_id=BASE,
            revision=SHA_A,
            revision_kind=revision_kind_of(SHA_A),
            report=analyse(planted_two_layers, AnalysisOptions()),
        )
    folders = {}
    for model_id, base in (("local/of-unknown", UNKNOWN_BASE), ("local/of-base", BASE)):
        folders[model_id] = shutil.copytree(planted_two_layers, tmp_path / model_id)
        (folders[model_id] / "README.md").write_text(_card(base))
        service.submit(sessions, str(folders[model_id]), model_id=model_id)

    def broken(*_args, **_kwargs):
        raise RuntimeError("the lineage check broke")

    # The failure is the parent's (where the check is put together): the child's would end the
    # same way, through the same handler.
    monkeypatch.setattr(science_lineage, "check_lineage", broken)
    Worker(sessions, WorkerConfig(once=True, lease_seconds=60, poll_seconds=0.1)).run()

    with sessions() as session:
        jobs = {job.model_id: job for job in session.query(Job)}
        for model_id, base in (("local/of-unknown", UNKNOWN_BASE), ("local/of-base", BASE)):
            job = jobs[model_id]
            assert job.state == JobState.SUCCEEDED, job.last_error
            assert "README.md" in [f["name"] for f in job.fetch["files"]]
            assert "lineage_check" not in job.timings
            (rev,) = lookup(session, model_id)
            assert (rev.base_model, rev.lineage_check) == (base, None)
            # The analysis is recorded whole.
            assert sorted(sw.state for sw in rev.super_weights) == ["verified", "verified"]
    messages = worker_messages(log)
    assert any(f"base model {UNKNOWN_BASE} has no verified coordinates" in m for m in messages)
    failed = worker_messages(log, logging.ERROR)
    assert any(
        "lineage check failed, the analysis is recorded without it: "
        "RuntimeError: the lineage check broke" in m
        for m in failed
    ), failed
