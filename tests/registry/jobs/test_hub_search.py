"""Whole-Hub submission through a Hub served over HTTP (tests/fake_hub.py): a search by author,
task, library or base model, most downloaded first, across the listing's pages; each model
pinned to the commit the listing names; what is analysed or queued is not queued again."""

import json

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from registry.app import create_app
from registry.auth import service as auth
from registry.cli import main
from registry.database import transaction
from registry.jobs.models import Job
from registry.superweights import service as sw_service
from tests.helpers import LiveServer, tiny_report
from tests.workers.conftest import fake_hub  # noqa: F401 (the fixture)
from workers.fixtures.planted import build_planted_model

REPOS = {
    # id: (downloads, task, library, base model)
    "acme/base": (900, "text-generation", "transformers", None),
    "acme/ft-1": (500, "text-generation", "transformers", "acme/base"),
    "acme/ft-2": (700, "text-generation", "transformers", "acme/base"),
    "other/ft-3": (100, "text-generation", "transformers", "acme/base"),
    "acme/vision": (999, "image-classification", "transformers", None),
    "acme/gguf-only": (800, "text-generation", "gguf", None),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_planted_model(
        "llama", tmp_path_factory.mktemp("tiny") / "llama", num_layers=2
    ).path


@pytest.fixture
def hub(fake_hub, tiny):  # noqa: F811
    shas = {}
    for repo, (downloads, task, library, base) in REPOS.items():
        shas[repo] = fake_hub.add_repo(
            repo, tiny, downloads=downloads, pipeline_tag=task, library=library, base_model=base
        )
    fake_hub.shas = shas
    return fake_hub


def _search(*args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["submit", "--hub-search", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_swreg_submit_hub_search_queues_the_most_downloaded_once(cli_env, hub, db_sessions):
    first = _search("--author", "acme", "--library", "transformers", "--limit", "3")
    assert [(o["model_id"], o["outcome"]) for o in first] == [
        ("acme/base", "queued"),
        ("acme/ft-2", "queued"),
        ("acme/ft-1", "queued"),
    ]
    assert all(o["revision"] == hub.shas[o["model_id"]] for o in first)
    assert [o["base_model"] for o in first] == [None, "acme/base", "acme/base"]
    # Listed across pages of two: every page was read, and only the listing's first three.
    assert sum(path == "/api/models" for _, path in hub.requests) >= 2

    # The fine-tunes of a base model: those already queued are said so, the new one queued.
    with transaction(db_sessions) as session:
        sw_service.record_report(
            session,
            model_id="acme/ft-1",
            revision=hub.shas["acme/ft-1"],
            revision_kind="commit",
            report=tiny_report(),
        )
    lineage = _search("--base-model", "acme/base")
    assert [(o["model_id"], o["outcome"]) for o in lineage] == [
        ("acme/ft-2", "queued already"),
        ("acme/ft-1", "analysed"),
        ("other/ft-3", "queued"),
    ]
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 4
    refused = CliRunner().invoke(main, ["submit", "acme/base", "--hub-search"])
    assert refused.exit_code == 2 and "takes no MODEL" in refused.output


def test_the_api_is_for_admin_tokens(db_url, db_sessions, hub):
    with transaction(db_sessions) as session:
        plain = auth.create_token(session, "user")[1]
        admin = auth.create_token(session, "ops", admin=True)[1]
    body = {"author": "acme", "sort": "downloads", "limit": 10}
    with LiveServer(create_app(db_url)) as live:
        url = f"{live.url}/api/v1/submissions/search"
        denied = httpx.post(url, json=body, headers={"Authorization": f"Bearer {plain}"})
        assert denied.status_code == 403
        answer = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        # Text generation only (the task's default): not the vision model.
        assert [i["model_id"] for i in page["items"]] == [
            "acme/base",
            "acme/gguf-only",
            "acme/ft-2",
            "acme/ft-1",
        ]
        assert (page["found"], page["queued"]) == (4, 4)
        again = httpx.post(url, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
        assert {i["outcome"] for i in again.json()["items"]} == {"queued already"}
        assert again.json()["queued"] == 0
        bad = httpx.post(
            url, json={**body, "limit": 0}, headers={"Authorization": f"Bearer {admin}"}
        )
        assert bad.status_code == 422
