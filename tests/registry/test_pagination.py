"""Lists page by key: the model list after a model id, the jobs after a job id, over real HTTP on
both databases, through the API, the Python client, `swreg list` / `swreg jobs` and the web
pages. Every item comes exactly once and in order, also while items are added between pages; a
malformed or hostile cursor is a one-line 422; the deprecated `offset` still works."""

import json

import httpx
import pytest
from click.testing import CliRunner

from registry.app import create_app
from registry.cli import main
from registry.database import transaction
from registry.index import service as index_service
from registry.index.document import EMPTY_REGISTRY_TIME
from registry.index.generate import generated_models
from registry.index.stream import meta_document
from registry.superweights import service
from registry.web import endpoints as web
from swreg.client import Client
from swreg.errors import InvalidInput as ClientInvalidInput
from tests.helpers import LiveServer, add_jobs

API = "/api/v1"
GENERATED = 23
PAGE = 5
# Ids that sort differently by code point and by a locale (capitals first, '_' after them).
MIXED_CASE = ["Zeta/last-by-locale", "_org/under", "aaa/first", "ZZ/caps", "zzz/tail"]


def _load(sessions, models) -> None:
    with transaction(sessions) as session:
        index_service.import_document(
            session, {"meta": meta_document(EMPTY_REGISTRY_TIME), "models": list(models)}
        )


def _model(model_id: str) -> dict:
    return {**next(generated_models(1, layers=1, revisions=1)), "model_id": model_id}


@pytest.fixture
def registry(db_url, db_sessions, fresh_reads):
    _load(db_sessions, generated_models(GENERATED, layers=1, revisions=1))
    _load(db_sessions, [_model(m) for m in MIXED_CASE])
    with LiveServer(create_app(db_url)) as live:
        yield live


def _ids(page) -> list[str]:
    return [item["model_id"] for item in page["items"]]


def test_every_model_once_in_binary_order_while_models_are_added(registry, db_sessions):
    expected = sorted([m["model_id"] for m in generated_models(GENERATED)] + MIXED_CASE)
    seen: list[str] = []
    passed: list[str] = []
    added: list[str] = []
    after = None
    while True:
        response = httpx.get(f"{registry.url}{API}/models", params={"limit": PAGE, "after": after})
        assert response.status_code == 200, response.text
        page = response.json()
        seen += _ids(page)
        if page["next"] is None:
            break
        assert page["next"] == seen[-1] and len(page["items"]) == PAGE
        after = page["next"]
        # Between pages: a model sorting before the cursor (a prefix of it: already passed, so
        # not shown) and one after it (shown on a later page).
        passed.append(after[:-2])
        added.append(f"{after}-b1")
        _load(db_sessions, [_model(passed[-1]), _model(added[-1])])
    assert len(seen) == len(set(seen))  # nothing twice
    assert seen == sorted(seen, key=lambda m: m.encode())  # binary (code point) order
    assert set(expected) <= set(seen) and set(added) <= set(seen)
    assert not set(passed) & set(seen)
    assert seen[:4] == ["ZZ/caps", "Zeta/last-by-locale", "_org/under", "aaa/first"]


def test_a_search_pages_by_cursor_too(registry):
    with Client(registry.url) as api:
        pages, after = [], None
        while True:
            page = api.list_models(limit=3, after=after, search="MODEL-000001")
            pages.append([m.model_id for m in page.items])
            if page.next is None:
                break
            after = page.next
        assert page.total == 10
    matching = [f"gen/model-{i:07d}" for i in range(10, 20)]
    assert pages == [matching[0:3], matching[3:6], matching[6:9], matching[9:]]


def test_the_client_iterates_every_model(registry):
    with Client(registry.url) as api:
        ids = [m.model_id for m in api.models()]
        assert len(ids) == GENERATED + len(MIXED_CASE) and ids == sorted(ids)
        assert [m.model_id for m in api.models(search="zz")] == ["ZZ/caps", "zzz/tail"]


@pytest.mark.parametrize(
    "after",
    ["x" * 300, "a\x00b", "../../etc/passwd", "org/model--x", "' OR 1=1 --", "a/b/c", " "],
)
def test_a_hostile_model_cursor_is_a_one_line_422(registry, after):
    response = httpx.get(f"{registry.url}{API}/models", params={"after": after})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "after" in message and "\n" not in message and len(message) < 400
    with Client(registry.url) as api, pytest.raises(ClientInvalidInput):
        api.list_models(after=after)


@pytest.mark.parametrize("after", ["abc", "-1", "0", "1.5", "9" * 30, "2147483648", "1 OR 1=1"])
def test_a_hostile_job_cursor_is_a_one_line_422(registry, after):
    for path in (f"{API}/jobs", "/jobs"):
        response = httpx.get(f"{registry.url}{path}", params={"after": after})
        assert response.status_code == 422, path
        message = response.json()["error"]["message"]
        assert "after" in message and "\n" not in message


def test_jobs_page_by_id_newest_first_while_jobs_are_added(registry, db_sessions):
    ids = add_jobs(db_sessions, 7)
    seen, after = [], None
    while True:
        cursor = {} if after is None else {"after": after}
        page = httpx.get(f"{registry.url}{API}/jobs", params={"limit": 3, **cursor}).json()
        seen += [job["id"] for job in page["items"]]
        if page["next"] is None:
            break
        assert page["next"] == seen[-1]
        after = page["next"]
        add_jobs(db_sessions, 1, prefix=f"org/late-{after}")  # newer: not on a later page
    assert seen == sorted(ids, reverse=True)
    queued = httpx.get(f"{registry.url}{API}/jobs", params={"state": "queued", "limit": 50})
    assert queued.json()["next"] is None


def test_an_empty_cursor_is_the_first_page(registry):
    empty = httpx.get(f"{registry.url}{API}/models", params={"limit": 3, "after": ""}).json()
    assert _ids(empty) == ["ZZ/caps", "Zeta/last-by-locale", "_org/under"]


def test_offset_still_works_and_is_documented_deprecated(registry):
    by_offset = httpx.get(f"{registry.url}{API}/models", params={"limit": 4, "offset": 4}).json()
    first = httpx.get(f"{registry.url}{API}/models", params={"limit": 4}).json()
    by_cursor = httpx.get(
        f"{registry.url}{API}/models", params={"limit": 4, "after": first["next"]}
    ).json()
    assert _ids(by_offset) == _ids(by_cursor) and by_offset["offset"] == 4
    openapi = httpx.get(f"{registry.url}{API}/openapi.json").json()
    for path in ("/api/v1/models", "/api/v1/jobs"):
        parameters = {p["name"]: p for p in openapi["paths"][path]["get"]["parameters"]}
        assert parameters["offset"].get("deprecated") is True, path
        assert "next" in parameters["after"]["description"], path


def test_swreg_list_prints_the_next_page_and_reads_it_locally_and_remotely(
    registry, cli_env, db_sessions
):
    first = CliRunner().invoke(main, ["list", "--limit", "4"])
    assert first.exit_code == 0, first.output
    following = first.output.splitlines()[-1]
    assert following == "next page: swreg list --limit 4 --after aaa/first"
    args = following.removeprefix("next page: swreg ").split() + ["--json"]
    local = CliRunner().invoke(main, args)
    remote = CliRunner().invoke(main, [*args, "--api", registry.url])
    assert local.exit_code == remote.exit_code == 0
    assert local.output == remote.output
    assert [m["model_id"] for m in json.loads(local.output)["items"]] == [
        f"gen/model-{i:07d}" for i in range(4)
    ]
    bad = CliRunner().invoke(main, ["list", "--after", "a\x00b"])
    assert bad.exit_code != 0 and "invalid cursor" in bad.output


def test_swreg_jobs_after_an_id(registry, cli_env, db_sessions):
    ids = add_jobs(db_sessions, 4)
    for api in ([], ["--api", registry.url]):
        shown = CliRunner().invoke(main, ["jobs", "--json", "--after", str(ids[2]), *api])
        assert shown.exit_code == 0, shown.output
        assert [job["id"] for job in json.loads(shown.output)] == ids[1::-1]


def test_the_web_pages_link_the_next_page_by_cursor(registry, db_sessions, monkeypatch):
    monkeypatch.setattr(web, "PAGE_SIZE", PAGE)
    home = httpx.get(f"{registry.url}/")
    assert 'href="/?q=&after=gen/model-0000000">next</a>' in home.text
    assert "first page" not in home.text
    second = httpx.get(f"{registry.url}/", params={"after": "aaa/first"})
    assert "gen/model-0000000" in second.text and "Zeta/last-by-locale" not in second.text
    assert 'href="/?q=">first page</a>' in second.text
    add_jobs(db_sessions, PAGE + 1)
    jobs = httpx.get(f"{registry.url}/jobs")
    assert 'href="/jobs?state=&after=2">older</a>' in jobs.text


def test_the_service_says_where_the_next_page_starts(db_sessions):
    _load(db_sessions, generated_models(3, layers=1, revisions=1))
    with transaction(db_sessions) as session:
        page = service.list_models(session, limit=2)
        assert (page.total, page.next) == (3, "gen/model-0000001")
        last = service.list_models(session, limit=2, after=page.next)
        assert ([m["model_id"] for m in last.items], last.next) == (["gen/model-0000002"], None)
        exact = service.list_models(session, limit=3)
        assert exact.next is None  # a full last page says so: no empty page to read
