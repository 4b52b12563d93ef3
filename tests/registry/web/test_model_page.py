"""A model page says all `swreg lookup` says: the one-line answer, the disputes between sources
with each claim, each source's locator and statement, the rejected cards collapsed, the legend,
verified first, "revision unknown" explained and a "use it" snippet that runs. Over FastAPI's
test client on real databases (the snippet against a real `swreg serve`); the layout in a real
browser is in test_browser.py."""

import subprocess
import sys
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.database import transaction
from registry.superweights import service
from tests.helpers import SHA_A, live_server, python_env
from tests.registry.web.test_experts_page import Rows

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
OLMO = "allenai/OLMo-1B-0724-hf"


class Texts(HTMLParser):
    """The text of every element with a given class (nested markup flattened)."""

    def __init__(self, html: str, css_class: str):
        super().__init__()
        self.css_class, self.found, self._open = css_class, [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "input", "meta", "link"):
            return
        for item in self._open:
            item[1] += 1
        if self.css_class in (dict(attrs).get("class") or "").split():
            self._open.append([[], 1])

    def handle_endtag(self, tag):
        for item in list(self._open):
            item[1] -= 1
            if item[1] == 0:
                self._open.remove(item)
                self.found.append(" ".join("".join(item[0]).split()))

    def handle_data(self, data):
        for item in self._open:
            item[0].append(data)


def texts(html: str, css_class: str) -> list[str]:
    return Texts(html, css_class).found


@pytest.fixture
def client(db_url, db_sessions, published, report):
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id=SMOL, revision=SHA_A, revision_kind="commit", report=report
        )
    with TestClient(create_app(db_url)) as client:
        yield client


def test_the_answer_comes_first_in_one_line(client):
    html = client.get(f"/models/{SMOL}").text
    answers = texts(html, "answer-line")
    # The smollm2-like report: layer 11 verified (378.6 / 20.19), layer 28 rejected.
    assert answers == [f"revision {SHA_A[:12]}…: 1 verified: L11 [507, 1229], ×18.8 · 1 rejected"]
    assert html.index('class="answer-line"') < html.index('class="grid coordinates"')
    olmo = texts(client.get(f"/models/{OLMO}").text, "answer-line")
    assert olmo == [
        "published (revision unknown): 3 published: L1 [1764, 1710]; "
        "L1 [1764, 8041] (disputed); L2 [1764, 8041] (disputed)"
    ]


def test_verified_is_listed_first_with_its_ratio(client):
    html = client.get(f"/models/{SMOL}").text
    rows = Rows(html, "coordinate").rows
    assert [r[:3] for r in rows] == [
        ["verified", "11", "[507, 1229]"],
        ["rejected", "28", "[507, 678]"],
    ]
    assert rows[0][7] == "×18.75" and rows[1][7] == "×1.00"
    cards = texts(html, "evidence")
    assert "[507, 1229]" in cards[0] and "[507, 678]" in cards[1]


def test_rejected_cards_are_collapsed(client):
    html = client.get(f"/models/{SMOL}").text
    collapsed = texts(html, "rejected-card")
    assert len(collapsed) == 1 and "[507, 678]" in collapsed[0]
    assert '<details class="rejected-card">' in html  # closed: no `open`
    verified_card = html[html.index(f'id="sw-{SHA_A[:12]}-11-507-1229"') - 200 :]
    assert not verified_card.lstrip().startswith("<details")


def test_the_dispute_is_shown_with_each_claim_and_its_sources(client):
    html = client.get(f"/models/{OLMO}").text
    disputes = texts(html, "dispute")
    assert len(disputes) == 1
    dispute = disputes[0]
    assert (
        "Sources disagree on where this weight is: model.layers.1.mlp.down_proj.weight "
        "[1764, 8041] or model.layers.2.mlp.down_proj.weight [1764, 8041]"
    ) in dispute
    claims = texts(html, "claim")
    assert len(claims) == 2
    layer1, layer2 = claims
    assert layer1.startswith(
        "layer 1 model.layers.1.mlp.down_proj.weight [1764, 8041], stated by 2 sources"
    )
    assert "Table 2, the directory of super weight coordinates" in layer1
    assert "haziq-exe/SuperWeightQuantization" in layer1
    assert layer2.startswith(
        "layer 2 model.layers.2.mlp.down_proj.weight [1764, 8041], stated by 1 source"
    )
    assert "analyze.py, SUPER_WEIGHTS_MAP in record_SO()" in layer2
    assert '"OLMo-1B-0724-hf": [(1, 1764, 1710), (2, 1764, 8041)]' in layer2
    # Each disputed card says where else the sources put it; the table marks it.
    marked = [r for r in Rows(html, "coordinate").rows if "disputed" in r[0]]
    assert [r[1:3] for r in marked] == [["1", "[1764, 8041]"], ["2", "[1764, 8041]"]]
    assert len(texts(html, "disputed-with")) == 2


def test_each_source_shows_its_locator_and_statement(client):
    html = client.get("/models/huggyllama/llama-7b").text
    assert "Table 2" in " ".join(texts(html, "locator"))
    assert "Llama 7B: layer 2, mlp.down_proj, [3968, 7003]" in " ".join(texts(html, "statement"))


def test_the_legend_explains_the_states_shown(client):
    smol = texts(client.get(f"/models/{SMOL}").text, "legend")[0]
    assert "verified found by swreg at this exact revision" in smol and "rejected" in smol
    assert "disputed" not in smol
    olmo = texts(client.get(f"/models/{OLMO}").text, "legend")[0]
    assert "published stated by a paper" in olmo and "disputed sources disagree" in olmo


def test_revision_unknown_is_explained(client):
    olmo = client.get(f"/models/{OLMO}").text
    assert "name the model, not the commit" in texts(olmo, "revision-unknown")[0]
    assert texts(client.get(f"/models/{SMOL}").text, "revision-unknown") == []


def test_the_index_page_lists_verified_before_rejected(client):
    html = client.get("/").text
    row = next(r for r in Rows(html, None).rows if r and r[0] == SMOL)
    assert row[3].index("verified") < row[3].index("rejected")


def test_the_python_snippet_runs_against_the_server_it_names(
    db_url, db_sessions, published, report
):
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id=SMOL, revision=SHA_A, revision_kind="commit", report=report
        )
    with live_server(db_url) as address:
        html = subprocess.run(
            ["curl", "-s", f"{address}/models/{OLMO}"], capture_output=True, text=True, check=True
        ).stdout
        import html as html_module

        def code(element_id: str) -> str:
            start = html.index(f'<code id="{element_id}">') + len(f'<code id="{element_id}">')
            return html_module.unescape(html[start : html.index("</code>", start)])

        python, http = code("snippet-python"), code("snippet-http")
        run = subprocess.run(
            [sys.executable, "-c", python],
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines() == [
            "published model.layers.1.mlp.down_proj.weight [1764, 1710]",
            "published model.layers.1.mlp.down_proj.weight [1764, 8041]",
            "published model.layers.2.mlp.down_proj.weight [1764, 8041]",
        ]
        assert http == f"curl -s '{address}/api/v1/models/{OLMO}?revision=unknown'"
        fetched = subprocess.run(
            ["sh", "-c", http], capture_output=True, text=True, check=True
        ).stdout
        assert '"model_id":"allenai/OLMo-1B-0724-hf"' in fetched
