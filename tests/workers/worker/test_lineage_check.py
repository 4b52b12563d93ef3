"""The lineage check is an optional step of a job: a base the registry holds no verified
coordinate of is stored without a check, and a check that fails costs the analysis nothing (it
is recorded without the check, and the failure logged). Local folders, whose model card is
their own README.md. (The check itself, end to end through a Hub: tests/test_lineage.py.)"""

import logging
import shutil

import httpx

from registry.database import transaction
from registry.jobs import service
from registry.jobs.models import Job, JobState
from registry.settings import get_settings
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


def test_a_moe_fine_tune_is_checked_for_its_bases_super_experts_and_served(
    sessions, sqlite_url, tmp_path, monkeypatch
):
    """A mixture-of-experts base with a verified super weight inside a verified super expert;
    a fine-tune (a local folder whose card names it) that lost that super weight. The worker's
    check finds both lost (the weight zeroed by the check's own sweep, the expert judged by the
    fine-tune's own detection, which still sees it spike a little and rejects it), the registry stores the check with its super experts, the index carrying it
    is valid against the schema and read back by the Python client, and `swreg lookup` and the
    model page show the experts' rows."""
    from click.testing import CliRunner

    from registry.cli import main
    from registry.index.document import validate_document
    from registry.index.service import export_document
    from registry.web.overview import keeps
    from swreg import Index
    from tests.lineage import shrink_weight
    from workers.fixtures.planted_moe import build_planted_moe

    planted = build_planted_moe("qwen3_moe", tmp_path / "moe-base")
    report = analyse(planted.path, AnalysisOptions())
    (weight,) = [sw for sw in report.super_weights if sw.state == "verified"]
    with transaction(sessions) as session:
        record_report(
            session,
            model_id="acme/moe-base",
            revision=SHA_A,
            revision_kind=revision_kind_of(SHA_A),
            report=report,
        )
    folder = shrink_weight(planted.path, tmp_path / "ft", weight.tensor, weight.index)
    (folder / "README.md").write_text(_card("acme/moe-base"))
    service.submit(sessions, str(folder), model_id="local/moe-ft")
    Worker(sessions, WorkerConfig(once=True, lease_seconds=60, poll_seconds=0.1)).run()

    with sessions() as session:
        (job,) = session.query(Job).filter(Job.model_id == "local/moe-ft")
        assert job.state == JobState.SUCCEEDED, job.last_error
        (rev,) = lookup(session, "local/moe-ft")
        check = rev.lineage_check
        document = export_document(session)
    assert [(c["outcome"], c["checked_by"]) for c in check["coordinates"]] == [("lost", "lineage")]
    assert [
        (e["layer"], e["expert"], e["outcome"], e["checked_by"]) for e in check["super_experts"]
    ] == [(planted.layer, planted.super_expert, "lost", "detection")]
    assert keeps(check).startswith(
        "keeps 0 of 1 verified super weight of its base and 0 of 1 super expert"
    )
    validate_document(document)
    (served,) = Index.from_document(document).lookup("local/moe-ft").revisions
    assert served.lineage_check is not None and served.lineage_check.super_experts is not None
    assert served.lineage_check.kept_experts == 0

    monkeypatch.setenv("SWREG_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(main, ["lookup", "local/moe-ft"])
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert "    outcome  layer  expert  module" in shown.output
    assert f"    lost     {planted.layer}      {planted.super_expert}  " in shown.output
    from registry.app import create_app
    from tests.helpers import LiveServer
    from tests.registry.web.test_model_page import texts

    with LiveServer(create_app(sqlite_url)) as live:
        page = httpx.get(f"{live.url}/models/local/moe-ft").text
    (line,) = texts(page, "lineage-base")
    assert "and 0 of 1 super expert" in line
    assert 'class="lineage-expert" data-outcome="lost"' in page
    assert f"<td>E{planted.super_expert}</td>" in page
