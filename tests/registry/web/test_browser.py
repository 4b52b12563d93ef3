"""The web pages in a real browser: headless Chromium (the Debian package, driven by Playwright,
never a downloaded browser) against a real `swreg serve`, with the network cut off from outside
(every host name but 127.0.0.1 resolves to nothing, and every request the pages make is checked
to have stayed on this server).

The registry holds the published index, a real SmolLM2-135M-Instruct report (the session's one
`swreg detect` run), a mixture-of-experts report (tests/expert_reports.py) and a running job. Each test saves a screenshot under test-artifacts/browser/
(or $SWREG_TEST_ARTIFACTS/browser/).

Chromium missing: skipped with the reason, except under SWREG_REQUIRE_BROWSER=1 (CI), where it
fails (`make test` installs it when it can).
"""

import copy
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from registry import migrate
from registry.database import make_engine, make_sessionmaker, transaction
from registry.index import service as index_service
from registry.jobs import queue
from registry.jobs.models import JobSource
from registry.superweights import service
from tests.expert_reports import moe_report
from tests.helpers import REPO_ROOT, SHA, SHA_A, python_env
from workers.contract.resources import PUBLISHED_INDEX_PATH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("SWREG_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER_ENV = "SWREG_REQUIRE_BROWSER"
ARTIFACTS = Path(os.environ.get("SWREG_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "browser"
# Every host name resolves to nothing except the server's own address; no proxy either.
OFFLINE_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-proxy-server"]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MOE_MODEL = "acme/tiny-moe"
# A fine-tune of SmolLM2 whose own detection re-verified its super weight.
FINE_TUNE = "acme/smol-fine-tune"
FINE_TUNE_SHA = "f" * 40
SERVER_START_TIMEOUT_S = 60
# How long a page may take to show what the test waits for (two busy cores).
WAIT_MS = 30_000


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(
            f"the browser is required ({REQUIRE_BROWSER_ENV}=1) but {reason}", pytrace=False
        )
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def playwright_chromium():
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
        yield browser
        browser.close()


# --- the server -----------------------------------------------------------------------------


@dataclass
class Registry:
    base: str
    sessions: object
    job_id: int
    lease: queue.Lease


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fill(url: str, report: dict):
    """The published index, the SmolLM2 report, and a job a worker is running."""
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
        index_service.import_document(session, _hostile_source_index())
        service.record_report(
            session, model_id=MODEL, revision=SHA_A, revision_kind="commit", report=report
        )
        service.record_report(
            session, model_id=MOE_MODEL, revision=SHA_A, revision_kind="commit", report=moe_report()
        )
        _record_fine_tune(session, report)
    with queue.write_transaction(sessions) as session:
        job, _ = queue.enqueue(
            session, model_id=MODEL, revision=SHA, source=JobSource.HUB, max_attempts=3
        )
    with queue.write_transaction(sessions) as session:
        _, lease = queue.claim(session, owner="worker-1", lease_seconds=3600)
    with queue.write_transaction(sessions) as session:
        queue.report_progress(
            session,
            lease,
            stage="detect",
            done=12,
            total=30,
            timings={"fetch": 0.4, "load": 4.1, "detect": 8.2},
        )
    return engine, sessions, job.id, lease


def _record_fine_tune(session, report: dict) -> None:
    """FINE_TUNE, with SmolLM2's report as its own: the lineage check a worker records for it
    (the science's check_lineage on the registry's base), every weight judged by detection."""
    from workers.contract.report import Report
    from workers.science.pipeline.lineage import check_lineage

    def no_ablation(rest):
        raise AssertionError(f"the fine-tune's own detection judged every weight, not {rest}")

    base = service.lineage_base(session, MODEL)
    assert base is not None  # SmolLM2's report, recorded just before, verifies [507, 1229]
    check = check_lineage(Report.model_validate(report), base, no_ablation)
    service.record_report(
        session,
        model_id=FINE_TUNE,
        revision=FINE_TUNE_SHA,
        revision_kind="commit",
        report=report,
        base_model=MODEL,
        lineage_check=check,
    )


HOSTILE_MODEL = "acme/hostile-source"
HOSTILE_URL = "javascript:alert(document.domain)"


def _hostile_source_index() -> dict:
    """A published entry whose first source URL is script (as an imported index may carry)."""
    document = index_service.load_file(PUBLISHED_INDEX_PATH)
    entry = copy.deepcopy(document["models"][0])
    entry["model_id"] = HOSTILE_MODEL
    entry["super_weights"] = entry["super_weights"][:1]
    entry["super_weights"][0]["provenance"]["sources"][0]["url"] = HOSTILE_URL
    return {**document, "models": [entry]}


@pytest.fixture(scope="module")
def registry(playwright_chromium, smollm2_detect, tmp_path_factory) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'registry.db'}"
    engine, sessions, job_id, lease = _fill(url, smollm2_detect.report)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "serve", "--port", str(port)],
        env=python_env(SWREG_DATABASE_URL=url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield Registry(base, sessions, job_id, lease)
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()


# --- one page visit ---------------------------------------------------------------------------


@dataclass
class Visit:
    page: object
    base: str
    requests: list[str] = field(default_factory=list)
    # Requests the browser refused to send because the page's Content-Security-Policy forbids
    # them (ReDoc's bundle asks for its maker's logo on a CDN): they never leave the browser.
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_stayed_local(self) -> None:
        # A page's own blob: URLs (ReDoc's worker) and data: URLs stay in the browser.
        local = (self.base + "/", f"blob:{self.base}/", "data:")
        outside = [u for u in self.requests if not u.startswith(local) and u not in self.blocked]
        assert self.requests and outside == [], outside
        assert self.errors == [], self.errors


DESKTOP = {"width": 1200, "height": 900}
# An iPhone 12-15's CSS width: the narrowest page the layout is checked at.
PHONE = {"width": 390, "height": 844}


@contextmanager
def _visiting(browser, base: str, viewport: dict, **context_options) -> Iterator[Visit]:
    context = browser.new_context(viewport=viewport, **context_options)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    v = Visit(page, base)
    context.on("request", lambda request: v.requests.append(request.url))
    context.on(
        "requestfailed",
        lambda request: request.failure == "csp" and v.blocked.append(request.url),
    )
    page.on("pageerror", lambda error: v.errors.append(str(error)))
    try:
        yield v
    finally:
        context.close()


@pytest.fixture
def visit(playwright_chromium, registry) -> Iterator[Visit]:
    # Clipboard permissions: the model page's "copy" buttons are clicked and read back.
    with _visiting(
        playwright_chromium,
        registry.base,
        DESKTOP,
        permissions=["clipboard-read", "clipboard-write"],
    ) as v:
        yield v


@pytest.fixture
def phone(playwright_chromium, registry) -> Iterator[Visit]:
    with _visiting(playwright_chromium, registry.base, PHONE, is_mobile=True, has_touch=True) as v:
        yield v


# --- the pages --------------------------------------------------------------------------------


def test_the_model_list_with_search(visit):
    visit.open("/")
    rows = visit.page.locator("#models tbody tr")
    # the 13 models of the published index, SmolLM2 and its fine-tune, the MoE model and the one
    # whose source is script
    assert rows.count() == 17
    smol = rows.filter(has_text=MODEL)
    assert smol.locator(".state-verified").inner_text() == "1 verified"
    assert smol.locator(".state-rejected").count() == 1
    assert visit.page.locator('a[href="/api/v1/index"]').count() >= 1
    assert visit.page.locator('a[href="/api/v1/docs"]').count() >= 1
    visit.shot("home")

    visit.page.fill('input[name="q"]', "llama-2")
    visit.page.press('input[name="q"]', "Enter")
    visit.page.wait_for_url("**/?q=llama-2")
    assert (
        visit.page.locator("#models tbody tr")
        .all_inner_texts()[0]
        .startswith("meta-llama/Llama-2-13b-hf")
    )
    assert visit.page.locator("#models tbody tr").count() == 2
    visit.assert_stayed_local()


def test_a_model_page_with_its_coordinates_evidence_and_plots(visit):
    visit.open(f"/models/{MODEL}")
    page = visit.page
    verified = page.locator("table.coordinates tr.coordinate[data-state=verified]")
    assert verified.count() == 1
    cells = verified.locator("td").all_inner_texts()
    assert cells[:6] == [
        "verified",
        "11",
        "[507, 1229]",
        "model.layers.11.mlp.down_proj.weight",
        "507",
        "1229",
    ]
    assert page.locator("table.coordinates tr.coordinate[data-state=rejected]").count() >= 1
    # Evidence in words and figures.
    evidence = page.locator("article.evidence").filter(has_text="[507, 1229]").first
    assert "zeroing it multiplies perplexity by" in evidence.locator(".verdict").inner_text()
    runs = evidence.locator("table.validation tbody tr td:first-child").all_inner_texts()
    assert runs[:3] == ["baseline", "zeroed", "restored"] and "control: random" in runs
    assert "Yu, Wang, Shan, Reed, Wan" not in evidence.inner_text()  # a detected coordinate
    assert "detected and validated by swreg" in evidence.locator(".sources").inner_text()

    # The plots: loaded, real images of the size the figures are drawn at.
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )
    sizes = page.evaluate(
        "() => [...document.querySelectorAll('img.profile-plot, img.ablation-plot')]"
        ".map(i => [i.className, i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [["profile-plot", 1000, 420], ["ablation-plot", 1000, 340]]
    visit.shot("model")
    visit.assert_stayed_local()


def test_a_moe_model_page_with_experts_super_experts_and_the_heat_map(visit):
    visit.open(f"/models/{MOE_MODEL}")
    page = visit.page
    header = page.locator("table.coordinates thead th").all_inner_texts()
    expert_column = header.index("expert")
    fused = page.locator("table.coordinates tr.coordinate").filter(has_text="[2, 7, 5]")
    assert fused.locator("td").nth(expert_column).inner_text() == "2"
    rows = page.locator("tr.super-expert")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").all_inner_texts()[:3] == ["verified", "1", "2"]
    assert rows.nth(1).get_attribute("data-state") == "rejected"
    evidence = page.locator(f"#se-{SHA_A[:12]}-1-2")
    assert "pruning it multiplies perplexity" in evidence.locator(".verdict").inner_text()
    page.locator("img.experts-plot").scroll_into_view_if_needed()  # it loads lazily
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.experts-plot')].every(i => i.complete && i.naturalWidth > 0)"
    )
    sizes = page.evaluate(
        "() => [...document.querySelectorAll('img.experts-plot')].map(i => [i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [[1000, 460]]
    visit.shot("moe-model")
    visit.assert_stayed_local()


def test_a_fine_tune_page_shows_its_lineage_both_ways(visit):
    visit.open(f"/models/{FINE_TUNE}")
    page = visit.page
    assert (
        page.locator("#lineage .lineage-base")
        .inner_text()
        .startswith(f"Fine-tune of {MODEL} — keeps 1 of 1 verified super weight of its base (×")
    )
    row = page.locator("table.lineage-table tr.lineage-coordinate")
    assert row.count() == 1 and row.get_attribute("data-outcome") == "kept"
    assert row.locator("td").all_inner_texts()[:3] == ["kept", "11", "[507, 1229]"]
    visit.shot("fine-tune")
    # Both ways: to its base, whose page lists it among its fine-tunes, and back.
    page.locator("#lineage a.base-model").click()
    page.wait_for_url(f"**/models/{MODEL}")
    fine_tunes = page.locator("#lineage li.fine-tune")
    assert fine_tunes.all_inner_texts() == [
        f"{FINE_TUNE} — keeps 1 of 1 verified super weight of this model"
    ]
    fine_tunes.locator("a").click()
    page.wait_for_url(f"**/models/{FINE_TUNE}")
    visit.assert_stayed_local()


def test_a_published_model_page_shows_its_citation(visit):
    visit.open("/models/huggyllama/llama-7b")
    row = visit.page.locator("table.coordinates tr.coordinate")
    assert row.locator("td").all_inner_texts()[:4] == [
        "published",
        "2",
        "[3968, 7003]",
        "model.layers.2.mlp.down_proj.weight",
    ]
    assert (
        "The Super Weight in Large Language Models"
        in visit.page.locator("ul.sources").first.inner_text()
    )
    assert visit.page.locator("img").count() == 0  # nothing detected: no profile, no plots
    visit.assert_stayed_local()


def test_a_job_page_follows_the_job_live(visit, registry):
    visit.open(f"/jobs/{registry.job_id}")
    page = visit.page

    def field(name: str):
        return page.locator(f'[data-field="{name}"]')

    assert field("state").inner_text() == "running"
    assert field("stage").inner_text() == "detect"
    assert field("progress-text").inner_text() == "12/30"
    assert field("progress").evaluate("p => [p.value, p.max]") == [12, 30]
    # Time left at the stage's pace (12 layers in 8.2 s: 18 more take 12.3 s); no job has
    # succeeded here, so it covers the stage only and says so.
    assert field("eta").inner_text() == "about 12 s"
    assert field("eta-basis").inner_text() == "(the pace of detect so far)"
    # The overall bar: the time the job has run over that plus the time left.
    ran, length = field("overall").evaluate("p => [p.value, p.max]")
    assert ran >= 0 and round(length - ran, 1) == 12.3

    # The worker moves on; the page shows it without a reload.
    with queue.write_transaction(registry.sessions) as session:
        assert queue.report_progress(
            session,
            registry.lease,
            stage="validate",
            done=20,
            total=30,
            timings={"fetch": 0.4, "load": 4.1, "detect": 14.0, "validate": 13.5},
        )
    page.wait_for_function(
        "() => document.querySelector('[data-field=stage]').textContent === 'validate'"
        " && document.querySelector('[data-field=progress-text]').textContent === '20/30'"
    )
    assert field("eta").inner_text() == "about 7 s"  # 10 more layers at 13.5 s for 20
    assert page.locator("#timings tbody tr td:first-child").all_inner_texts() == [
        "fetch",
        "load",
        "detect",
        "validate",
    ]
    visit.shot("job", full_page=False)

    # It fails: the page shows the state and the error, and stops polling.
    with queue.write_transaction(registry.sessions) as session:
        queue.fail(session, registry.lease, "out of memory on layer 21", permanent=True)
    page.wait_for_function("() => document.querySelector('#job').dataset.state === 'failed'")
    assert field("error").inner_text() == "out of memory on layer 21"
    assert field("eta").inner_text() == "–"
    assert field("overall").evaluate("p => p.position") == -1  # no time left to show
    assert field("live").inner_text() == ""
    visit.assert_stayed_local()


def test_the_api_docs_render_offline(visit):
    visit.open("/api/v1/docs")
    page = visit.page
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) >= 10
    assert "/api/v1/models/{model_id}/revisions/{revision}/plots/profile.png" in [
        p.strip() for p in paths
    ]
    assert page.evaluate("() => ui.getConfigs().oauth2RedirectUrl").endswith(
        "/api/v1/docs/oauth2-redirect"
    )
    visit.shot("api-docs")
    visit.assert_stayed_local()

    visit.requests.clear()
    visit.open("/api/v1/redoc")
    page.locator("h2", has_text="Get Profile Plot").first.wait_for()
    visit.assert_stayed_local()
    assert all(url.startswith("https://cdn.redoc.ly/") for url in visit.blocked), visit.blocked


SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def test_a_script_source_is_text_not_a_link_and_every_page_sends_the_security_headers(visit):
    page = visit.page
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    response = page.goto(f"{visit.base}/models/{HOSTILE_MODEL}")
    assert response.status == 200
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, name
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    sources = page.locator("ul.sources").first
    assert HOSTILE_URL in sources.inner_text()  # shown, as text
    hrefs = sources.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert not any(h and h.strip().lower().startswith("javascript:") for h in hrefs), hrefs
    assert page.locator('a[href^="javascript:" i]').count() == 0
    # Clicking the text of the source runs nothing.
    page.get_by_text(HOSTILE_URL).first.click()
    assert dialogs == []
    # Every other kind of answer carries the headers too: pages, the docs, JSON, errors, PNGs.
    for path in (
        "/",
        "/jobs",
        "/api/v1/docs",
        "/api/v1/redoc",
        "/api/v1/models",
        "/nowhere",
        "/static/style.css",
    ):
        answer = httpx.get(visit.base + path, timeout=10)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (path, name)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], path
    visit.assert_stayed_local()


def test_the_browser_cannot_reach_anything_else(visit):
    from playwright.sync_api import Error

    with pytest.raises(Error, match="ERR_NAME_NOT_RESOLVED"):
        visit.page.goto("http://example.org/")


# --- the model page says all the CLI says -------------------------------------------------------

OLMO = "allenai/OLMo-1B-0724-hf"
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
GREEN = "rgb(30, 132, 73)"


def _no_sideways_scroll(visit: Visit) -> None:
    """The page is no wider than the screen, and every coordinate's index is on it."""
    page = visit.page
    width = PHONE["width"]
    # A mobile browser widens its layout viewport to fit content wider than the screen.
    assert page.evaluate("() => [window.innerWidth, document.documentElement.scrollWidth]") == [
        width,
        width,
    ]
    # The coordinate table fits whole (it does not hide behind a scroll box either).
    boxes = [t.bounding_box() for t in page.locator("table.coordinates").all()]
    boxes += [cell.bounding_box() for cell in page.locator("table.coordinates td.index").all()]
    assert boxes and all(
        b is not None and b["x"] >= 0 and b["x"] + b["width"] <= width for b in boxes
    ), boxes


def test_the_model_page_answers_first_verified_green_and_rejected_collapsed(visit):
    visit.open(f"/models/{MODEL}")
    page = visit.page
    answer = page.locator(".answer-line").inner_text()
    # The real SmolLM2 run: layer 11's weight verified, its ratio from the ablation; the rest rejected.
    assert answer.startswith(f"revision {SHA_A[:12]}…: 1 verified: L11 [507, 1229], ×"), answer
    assert answer.endswith(" rejected")
    assert (
        page.locator(".answer").bounding_box()["y"]
        < page.locator("table.coordinates").bounding_box()["y"]
    )

    rows = page.locator("table.coordinates tr.coordinate")
    assert rows.first.get_attribute("data-state") == "verified"
    assert set(rows.evaluate_all("rows => rows.slice(1).map(r => r.dataset.state)")) == {"rejected"}
    badge = rows.first.locator(".state-verified")
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == GREEN
    assert rows.first.locator("td.ratio").inner_text().startswith("×")

    legend = page.locator("#legend")
    assert legend.is_visible()
    assert set(legend.locator("dd").evaluate_all("ds => ds.map(d => d.dataset.state)")) == {
        "verified",
        "rejected",
    }

    # Rejected evidence collapsed: the verified card shows, each rejected one is a summary line.
    cards = page.locator("details.rejected-card")
    assert cards.count() == rows.count() - 1
    first = cards.first
    assert first.evaluate("d => d.open") is False
    assert not first.locator("article.evidence").is_visible()
    assert "zeroing it" in first.locator("summary").inner_text()
    first.locator("summary").click()
    assert first.locator("article.evidence table.validation").is_visible()
    first.locator("summary").click()
    assert page.locator(f"#sw-{SHA_A[:12]}-11-507-1229 table.validation").is_visible()
    height = page.evaluate("() => document.documentElement.scrollHeight")
    print(f"SmolLM2 page height at {DESKTOP['width']} px: {height} px")

    # "Use it": the Python snippet names this server and revision; its button copies it.
    python = page.locator("#snippet-python").inner_text()
    assert f'swreg.Client("{visit.base}")' in python and f'revision="{SHA_A}"' in python
    page.locator('button.copy[data-copy="snippet-python"]').click()
    page.wait_for_function(
        "() => document.querySelector('button.copy[data-copy=snippet-python]').textContent === 'copied'"
    )
    assert page.evaluate("() => navigator.clipboard.readText()") == python
    assert page.locator("#snippet-http").inner_text() == (
        f"curl -s '{visit.base}/api/v1/models/{MODEL}?revision={SHA_A}'"
    )
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    visit.shot("smollm2-desktop")
    visit.assert_stayed_local()


def test_the_olmo_page_shows_the_dispute_with_each_claim_and_source(visit):
    visit.open(f"/models/{OLMO}")
    page = visit.page
    assert page.locator(".answer-line").inner_text() == (
        "published (revision unknown): 3 published: L1 [1764, 1710]; "
        "L1 [1764, 8041] (disputed); L2 [1764, 8041] (disputed)"
    )
    assert "name the model, not the commit" in page.locator(".revision-unknown").inner_text()
    dispute = page.locator(".dispute")
    assert dispute.count() == 1 and dispute.is_visible()
    claims = dispute.locator("li.claim")
    assert [claims.nth(i).get_attribute("data-tensor") for i in range(2)] == [
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.2.mlp.down_proj.weight",
    ]
    layer1, layer2 = claims.nth(0), claims.nth(1)
    assert "stated by 2 sources" in layer1.inner_text()
    assert (
        "Table 2, the directory of super weight coordinates"
        in layer1.locator(".locator").first.inner_text()
    )
    assert "stated by 1 source" in layer2.inner_text()
    assert "(2, 1764, 8041)" in layer2.locator(".statement").inner_text()
    # The claim links to its coordinate's card, which says where else it is placed.
    layer2.locator("a").first.click()
    card = page.locator("#sw-unknown-2-1764-8041")
    assert (
        "other sources place this weight at model.layers.1.mlp.down_proj.weight [1764, 8041]"
        in (card.locator(".disputed-with").inner_text())
    )
    disputed_rows = page.locator("table.coordinates tr.coordinate[data-disputed=true]")
    assert disputed_rows.count() == 2
    assert "disputed" in page.locator("#legend dd[data-state=disputed]").evaluate(
        "d => d.dataset.state"
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    visit.shot("olmo-1b-desktop")
    visit.assert_stayed_local()


@pytest.mark.parametrize("model, name", [(MODEL, "smollm2-phone"), (OLMO, "olmo-1b-phone")])
def test_a_model_page_is_readable_at_phone_width(phone, model, name):
    phone.open(f"/models/{model}")
    page = phone.page
    _no_sideways_scroll(phone)
    assert page.locator(".answer-line").is_visible()
    # The tensor column gives way on a phone; state, layer, index and the link stay.
    headers = [h for h in page.locator("table.coordinates thead th").all() if h.is_visible()]
    assert [h.inner_text() for h in headers][:3] == ["state", "layer", "index"]
    assert not page.locator("table.coordinates tbody td.wide").first.is_visible()
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    phone.shot(name)
    phone.assert_stayed_local()
