"""Lineage end to end, through a Hub served over HTTP (tests/fake_hub.py) and real worker jobs:

- a base model with planted super weights is published and analysed: two verified coordinates;
- `swreg submit --hub-search --base-model` finds its two fine-tunes, each published with
  `base_model:` in its model card: one that keeps the super weights (every other weight moved),
  one that shrank them (tests/lineage.py);
- the worker reads each card at the pinned commit, stores the base with the revision, and checks
  the base's verified coordinates in the fine-tune by ablation: `kept` (judged by the fine-tune's
  own detection) and `lost` (ablated by the lineage check, which detection had nothing to say
  about);
- the registry serves the lineage both ways, on SQLite and PostgreSQL: the API's lookup, the
  Python client, `swreg lookup`, the index (export, import, export: the same bytes), the
  changes feed and the model pages.

The jobs run once for the module (one SQLite registry); its index is what the serving tests
import into each database.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from registry import migrate
from registry.app import create_app
from registry.cli import main
from registry.database import make_engine, make_sessionmaker, transaction
from registry.index import bulk
from registry.index.stream import iter_index
from registry.jobs import service as jobs_service
from registry.jobs.models import Job, JobState
from registry.settings import get_settings
from registry.superweights import service
from swreg import Client, Index
from tests.helpers import LiveServer, other_database
from tests.lineage import LOST_SCALE, fine_tune
from tests.registry.web.test_model_page import texts
from tests.workers.conftest import serving_fake_hub
from workers.fixtures.planted import build_planted_model
from workers.science.validation.verdict import MIN_PERPLEXITY_RATIO
from workers.worker.loop import Worker, WorkerConfig

BASE = "acme/base"
KEPT = "acme/ft-keeps"
LOST = "other/ft-lost"
# Listing order of the Hub search (most downloaded first).
DOWNLOADS = {BASE: 900, KEPT: 500, LOST: 100}


@dataclass
class Lineage:
    shas: dict[str, str]
    search: list[dict]  # what `swreg submit --hub-search --base-model` printed
    jobs: dict[str, Job]
    revisions: dict[str, dict]  # model id -> its revision document
    index: Path  # the registry's export


def _work(sessions) -> None:
    Worker(sessions, WorkerConfig(once=True, lease_seconds=60, poll_seconds=0.1)).run()


@pytest.fixture(scope="module")
def lineage(tmp_path_factory) -> Lineage:
    root = tmp_path_factory.mktemp("lineage")
    base = build_planted_model("llama", root / "base", num_layers=2)
    models = {
        BASE: base.path,
        KEPT: fine_tune(base, root / "keeps", keeps=True),
        LOST: fine_tune(base, root / "lost", keeps=False),
    }
    url = f"sqlite:///{root / 'registry.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with pytest.MonkeyPatch.context() as patch, serving_fake_hub(root / "hf", patch) as hub:
        patch.setenv("SWREG_DATABASE_URL", url)
        get_settings.cache_clear()
        shas = {
            model_id: hub.add_repo(
                model_id,
                path,
                downloads=DOWNLOADS[model_id],
                base_model=None if model_id == BASE else BASE,
            )
            for model_id, path in models.items()
        }
        jobs_service.submit(sessions, BASE)
        _work(sessions)
        found = CliRunner().invoke(main, ["submit", "--hub-search", "--base-model", BASE, "--json"])
        assert found.exit_code == 0, found.output
        _work(sessions)
    get_settings.cache_clear()
    with sessions() as session:
        jobs = {job.model_id: job for job in session.scalars(select(Job))}
        revisions = {
            model_id: service.lookup_document(session, model_id)["revisions"][0]
            for model_id in models
        }
        index = root / "index.json"
        index.write_text("".join(iter_index(session)), encoding="utf-8")
    engine.dispose()
    return Lineage(shas, json.loads(found.stdout), jobs, revisions, index)


# --- the jobs ----------------------------------------------------------------------------------


def test_the_hub_search_finds_the_fine_tunes_of_the_base(lineage):
    assert [(o["model_id"], o["outcome"], o["base_model"]) for o in lineage.search] == [
        (KEPT, "queued", BASE),
        (LOST, "queued", BASE),
    ]
    for model_id, job in lineage.jobs.items():
        assert job.state == JobState.SUCCEEDED, (model_id, job.last_error)
        assert job.revision == lineage.shas[model_id]
    # The card was fetched with the checkpoint (a base names none: the fake Hub writes no card).
    for model_id in (KEPT, LOST):
        assert "README.md" in [f["name"] for f in lineage.jobs[model_id].fetch["files"]]
        assert lineage.jobs[model_id].timings["lineage_check"] > 0
    assert "lineage_check" not in lineage.jobs[BASE].timings


def test_the_base_is_verified_and_names_no_base(lineage):
    rev = lineage.revisions[BASE]
    assert "base_model" not in rev and "lineage_check" not in rev
    assert [sw["state"] for sw in rev["super_weights"]] == ["verified", "verified"]


def test_a_fine_tune_that_keeps_the_super_weights_is_checked_kept(lineage):
    rev = lineage.revisions[KEPT]
    assert rev["base_model"] == BASE
    check = rev["lineage_check"]
    assert (check["base_model"], check["base_revision"]) == (BASE, lineage.shas[BASE])
    base = {
        (sw["tensor"], tuple(sw["index"])): sw for sw in lineage.revisions[BASE]["super_weights"]
    }
    own = {(sw["tensor"], tuple(sw["index"])): sw for sw in rev["super_weights"]}
    assert [c["outcome"] for c in check["coordinates"]] == ["kept", "kept"]
    for c in check["coordinates"]:
        key = (c["tensor"], tuple(c["index"]))
        # Judged by the fine-tune's own detection, which verified the same weight.
        assert c["checked_by"] == "detection" and own[key]["state"] == "verified"
        assert c["ratio"] == own[key]["evidence"]["validation"]["ablated"]["ratio"]
        assert c["interval"]["low"] >= MIN_PERPLEXITY_RATIO
        assert c["value"] == c["base_value"] == base[key]["value"]
        assert c["base_ratio"] == base[key]["evidence"]["validation"]["ablated"]["ratio"]
        assert c["validation"]["verdict"]["state"] == "verified"


def test_a_fine_tune_that_lost_them_is_checked_lost_by_its_own_ablation(lineage):
    rev = lineage.revisions[LOST]
    assert rev["base_model"] == BASE and rev["super_weights"] == []  # nothing to detect
    check = rev["lineage_check"]
    assert [c["outcome"] for c in check["coordinates"]] == ["lost", "lost"]
    for c in check["coordinates"]:
        assert c["checked_by"] == "lineage"
        assert c["interval"]["high"] < MIN_PERPLEXITY_RATIO
        assert c["value"] == pytest.approx(c["base_value"] * LOST_SCALE)
        assert c["validation"]["verdict"]["state"] == "rejected"
        assert set(c["validation"]["controls"]) == {"random", "top_k"}


# --- served, on SQLite and PostgreSQL ----------------------------------------------------------


@pytest.fixture
def served(lineage, db_url, db_sessions):
    """The jobs' registry, imported from its index into this test's database."""
    with transaction(db_sessions) as session:
        bulk.import_file(session, lineage.index)
    return db_url


def test_the_api_and_the_client_show_the_lineage_both_ways(lineage, served):
    with LiveServer(create_app(served)) as live:
        answer = httpx.get(f"{live.url}/api/v1/models/{BASE}").json()
        assert answer["lineage"] == {
            "base_models": [],
            "fine_tunes": [
                {"model_id": KEPT, "revision": lineage.shas[KEPT], "kept": 2, "checked": 2},
                {"model_id": LOST, "revision": lineage.shas[LOST], "kept": 0, "checked": 2},
            ],
            "fine_tunes_total": 2,
        }
        fine = httpx.get(f"{live.url}/api/v1/models/{KEPT}").json()
        assert fine["lineage"] == {"base_models": [BASE], "fine_tunes": [], "fine_tunes_total": 0}
        assert fine["revisions"] == [lineage.revisions[KEPT]]

        with Client(live.url) as api:
            (rev,) = api.lookup(LOST, lineage.shas[LOST]).revisions
            assert rev.base_model == BASE and rev.lineage_check is not None
            assert rev.lineage_check.kept == 0
            assert [c.outcome for c in rev.lineage_check.coordinates] == ["lost", "lost"]
            assert api.lookup(BASE).lineage.fine_tunes[0].model_id == KEPT
            # An index read offline answers what the API answers, lineage included.
            index = Index.load(lineage.index)
            for model_id in (BASE, KEPT, LOST):
                assert index.lookup(model_id) == api.lookup(model_id)

        changes = httpx.get(f"{live.url}/api/v1/changes", params={"since": "0"}).json()
        by_model = {c["model_id"]: c["model"] for c in changes["changes"]}
        assert by_model[KEPT]["base_model"] == BASE and "base_model" not in by_model[BASE]


def test_the_index_carries_the_lineage_and_round_trips(
    lineage, served, db_sessions, request, tmp_path
):
    with transaction(db_sessions) as session:
        exported = "".join(iter_index(session))
    # What the worker's registry wrote, byte for byte, from an import of it.
    assert exported == lineage.index.read_text(encoding="utf-8")
    models = {m["model_id"]: m for m in json.loads(exported)["models"]}
    assert models[KEPT]["base_model"] == BASE and "base_model" not in models[BASE]
    with other_database(db_sessions, request, tmp_path) as other:
        with transaction(other) as session:
            bulk.import_file(session, lineage.index)
        with transaction(other) as session:
            assert "".join(iter_index(session)) == exported


def test_swreg_lookup_shows_the_lineage(lineage, served, cli_env):
    fine = CliRunner().invoke(main, ["lookup", LOST])
    assert fine.exit_code == 0, fine.output
    assert (
        f"fine-tune of {BASE} @ {lineage.shas[BASE]}: keeps 0 of 2 verified super weights of "
        "its base" in fine.output
    )
    assert fine.output.count("  lost ") == 2
    base = CliRunner().invoke(main, ["lookup", BASE])
    assert "fine-tunes in the registry (2):" in base.output
    assert f"  {KEPT} @ {lineage.shas[KEPT]}: keeps 2 of 2" in base.output


def test_the_model_pages_show_the_lineage_both_ways(lineage, served):
    with LiveServer(create_app(served)) as live:
        page = httpx.get(f"{live.url}/models/{KEPT}").text
        (line,) = texts(page, "lineage-base")
        assert line.startswith(
            f"Fine-tune of {BASE} — keeps 2 of 2 verified super weights of its base (×"
        )
        assert f'<a class="base-model" href="/models/{BASE}">{BASE}</a>' in page
        outcomes = texts(page, "outcome")
        assert outcomes == ["kept", "kept"]

        lost = httpx.get(f"{live.url}/models/{LOST}").text
        assert texts(lost, "lineage-base")[0].startswith(
            f"Fine-tune of {BASE} — keeps 0 of 2 verified super weights of its base (checked"
        )
        assert texts(lost, "outcome") == ["lost", "lost"]

        base = httpx.get(f"{live.url}/models/{BASE}").text
        assert texts(base, "fine-tune") == [
            f"{KEPT} — keeps 2 of 2 verified super weights of this model",
            f"{LOST} — keeps 0 of 2 verified super weights of this model",
        ]
        assert f'href="/models/{KEPT}"' in base and f'href="/models/{LOST}"' in base
