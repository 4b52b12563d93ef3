"""The Python client against a live `swreg serve` (real HTTP) on SQLite and PostgreSQL: reads,
errors as swreg's error kinds, `coordinates_for` for a Hub revision and for a local directory,
and a submission followed to its end by a real worker, with the quantization check stored and
served."""

import httpx
import pytest

from registry.auth import service as auth
from registry.database import transaction
from registry.index import service as index_service
from registry.jobs.schemas import JobOut, SubmissionOut
from registry.superweights import service
from registry.superweights.schemas import ModelLookup, RevisionOut
from swreg import Client, InvalidInput, NotFound, Unauthorized, Unavailable, coordinates_for
from tests.helpers import SHA_A, free_port, live_server, smollm2_like_report
from workers.contract.resources import PUBLISHED_INDEX_PATH
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.sources.pinning import hash_local_weights, local_revision
from workers.worker.loop import Worker, WorkerConfig

HUB_REPO = "acme/planted-llama"


@pytest.fixture
def registry(db_sessions, planted_reports):
    """The published index, a SmolLM2-like report at a commit, the planted llama's report at its
    content revision, and an API token. Returns (planted model, its revision, token)."""
    planted, report = planted_reports("llama")
    revision = local_revision(hash_local_weights(planted.path))
    with transaction(db_sessions) as session:
        index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
        service.record_report(
            session,
            model_id="org/smol",
            revision=SHA_A,
            revision_kind="commit",
            report=smollm2_like_report(),
        )
        service.record_report(
            session,
            model_id="me/planted",
            revision=revision,
            revision_kind="content",
            report=report,
        )
        _, token = auth.create_token(session, "client-tests")
    return planted, revision, token


@pytest.fixture
def api(db_url, registry, hf_cache):
    """A live server (offline, on the test's Hugging Face cache) and a client with a token."""
    with live_server(db_url) as address, Client(address, token=registry[2]) as client:
        yield client


def test_reads_parse_into_the_servers_schemas(api):
    found = api.lookup("huggyllama/llama-7b")
    assert isinstance(found, ModelLookup)
    (sw,) = found.revisions[0].super_weights
    assert (sw.tensor, sw.index, sw.state) == (
        "model.layers.2.mlp.down_proj.weight",
        [3968, 7003],
        "published",
    )
    assert sw.provenance.citation.startswith("Yu, Wang, Shan, Reed, Wan")
    one = api.lookup("org/smol", SHA_A).revisions
    assert [r.revision for r in one] == [SHA_A]
    assert {s.state for s in one[0].super_weights} == {"verified", "rejected"}
    published = {m["model_id"] for m in index_service.load_file(PUBLISHED_INDEX_PATH)["models"]}
    page = api.list_models(limit=5)
    assert (page.total, len(page.items)) == (len(published) + 2, 5)  # + me/planted, org/smol
    assert [m.model_id for m in api.models()] == sorted(published | {"me/planted", "org/smol"})
    index = api.index()
    assert index.source == f"{api.url}/index"
    assert index.lookup("org/smol", SHA_A) == api.lookup("org/smol", SHA_A)
    assert api.health()["status"] == "ok"


def test_a_directory_is_found_by_the_content_hash_of_its_weights(api, registry):
    planted, revision, _ = registry
    (entry,) = api.at_revision(revision)
    assert isinstance(entry, RevisionOut) and entry.model_id == "me/planted"
    found = coordinates_for(planted.path, api=api)
    assert (found.model_id, found.revision, found.source) == ("me/planted", revision, api.url)
    assert {(c.layer, c.row, c.col) for c in found} == {
        (p.layer, p.row, p.col) for p in planted.plants
    }
    assert all(c.state == "verified" for c in found)
    # An address works as well as a client.
    assert coordinates_for(planted.path, api=api.url).super_weights == found.super_weights


def test_a_hub_revision_is_found_at_its_commit_and_published_entries_by_unknown(api):
    found = coordinates_for("org/smol", SHA_A, api=api)
    assert [(c.tensor, c.index) for c in found] == [
        ("model.layers.11.mlp.down_proj.weight", [507, 1229])
    ]
    everything = coordinates_for("org/smol", SHA_A, api=api, states=None)
    assert len(everything) == 2
    published = coordinates_for("huggyllama/llama-7b", "unknown", api=api)
    assert [c.state for c in published] == ["published"]
    with pytest.raises(NotFound, match="pass revision='unknown'"):
        coordinates_for("huggyllama/llama-7b", "b" * 40, api=api)


def test_errors_are_swregs_error_kinds_with_the_servers_message(api, registry, tmp_path):
    with pytest.raises(NotFound, match="^model not in the registry: nobody/nothing$") as info:
        api.lookup("nobody/nothing")
    assert (info.value.status_code, info.value.code) == (404, "not_found")
    with pytest.raises(InvalidInput, match="revision"):
        api.lookup("huggyllama/llama-7b", "main")
    with pytest.raises(NotFound):
        api.at_revision("sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        api.job(999)
    with Client(api.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.submit(HUB_REPO)
    with (
        Client(f"http://127.0.0.1:{free_port()}") as nowhere,
        pytest.raises(Unavailable, match="cannot reach"),
    ):
        nowhere.lookup("huggyllama/llama-7b")
    with pytest.raises(InvalidInput, match="one source"):
        coordinates_for("org/smol", SHA_A)
    with pytest.raises(InvalidInput, match="revision applies to Hub models"):
        coordinates_for(registry[0].path, SHA_A, api=api)
    with pytest.raises(InvalidInput, match="no such folder: ./not-here"):
        coordinates_for("./not-here", api=api)


def test_submit_wait_and_read_the_quantization_check(api, db_sessions, hf_cache, planted_reports):
    planted, report = planted_reports("llama")
    sha = install_into_hf_cache(planted.path, hf_cache, HUB_REPO)
    submitted = api.submit(HUB_REPO, "main")
    assert isinstance(submitted, SubmissionOut) and submitted.created
    job = submitted.job
    assert (job.revision, job.requested_revision, job.state) == (sha, "main", "queued")
    with pytest.raises(TimeoutError, match=f"job {job.id} is still queued"):
        api.wait(job.id, timeout=0.3, poll_seconds=0.1)

    worker = Worker(db_sessions, WorkerConfig(once=True, quantize_check=True, poll_seconds=0.1))
    assert worker.run() == 1
    done = api.wait(job.id, timeout=30, poll_seconds=0.1)
    assert isinstance(done, JobOut) and done.state == "succeeded", done.last_error
    assert done.timings["quantize_check"] > 0

    # The branch is pinned through the offline Hub cache, as the server pinned it.
    found = coordinates_for(HUB_REPO, "main", api=api)
    assert found.revision == sha
    verified = {(c.layer, c.row, c.col) for c in found}
    assert verified == {(p.layer, p.row, p.col) for p in planted.plants}
    check = found.entry.quantization_check
    assert check is not None and check["kept_from"] == "detection"
    assert {(k["layer"], k["row"], k["col"]) for k in check["kept"]} == verified
    assert len(check["results"]) == 2 * 4 * 3  # int4, int3 x 4 block sizes x 3 variants
    # The check scores the same evaluation text as the job's own analysis, on its whole budget
    # (every setting on every window: one prediction fewer than tokens in each window).
    analysed = found.entry.super_weights[0].evidence["validation"]["eval"]
    assert check["eval"]["sha256"] == analysed["sha256"]
    assert check["eval"]["tokens"] == analysed["tokens"]
    assert check["baseline"]["tokens"] == check["eval"]["tokens"] - check["eval"]["windows"]
    # The same document over plain HTTP, and in the index.
    raw = httpx.get(f"{api.url}/models/{HUB_REPO}", params={"revision": sha}).json()
    assert raw["revisions"][0]["quantization_check"] == check
    assert api.index().lookup(HUB_REPO, sha).revisions[0].quantization_check == check
