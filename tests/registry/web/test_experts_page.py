"""A mixture-of-experts revision on the web: the expert column of the coordinate table, the
super experts with their states and evidence, and the per-layer/per-expert heat map of the
largest |down-projection output| (a real PNG, cacheable), over FastAPI's test client on real
databases."""

import io
import math
from html.parser import HTMLParser

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from registry.app import create_app
from registry.database import transaction
from registry.superweights import service
from registry.web import plots
from tests.expert_reports import moe_report
from tests.helpers import SHA_A
from workers.contract.report import Report

MODEL = "acme/tiny-moe"
BASE = f"/api/v1/models/{MODEL}/revisions/{SHA_A}"


class Rows(HTMLParser):
    """The cell texts of every table row with class `row_class` (every row: None), by the
    standard library's parser (enough for the server's own markup)."""

    def __init__(self, html: str, row_class: str | None):
        super().__init__()
        self.row_class, self.rows, self._row, self._cell = row_class, [], None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "tr" and (self.row_class is None or self.row_class in classes):
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _between(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end, html.index(start))]


@pytest.fixture
def client(db_url, db_sessions, report):
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id=MODEL, revision=SHA_A, revision_kind="commit", report=moe_report()
        )
        service.record_report(
            session, model_id="org/dense", revision=SHA_A, revision_kind="commit", report=report
        )
    with TestClient(create_app(db_url)) as client:
        yield client


def test_the_coordinate_table_has_an_expert_column(client):
    html = client.get(f"/models/{MODEL}").text
    assert '<th class="wide">col</th><th class="wide">expert</th>' in _between(
        html, '<table class="grid coordinates">', "</thead>"
    )
    rows = {tuple(row[:7]) for row in Rows(html, "coordinate").rows}
    assert (
        "verified",
        "1",
        "[2, 7, 5]",
        "model.layers.1.mlp.experts.down_proj",
        "5",
        "7",
        "2",
    ) in rows
    assert (
        "rejected",
        "3",
        "[5, 6]",
        "model.layers.3.mlp.experts.1.down_proj.weight",
        "5",
        "6",
        "1",
    ) in rows


def test_super_experts_are_listed_with_their_states_and_evidence(client):
    html = client.get(f"/models/{MODEL}").text
    rows = Rows(html, "super-expert").rows
    assert [r[:4] for r in rows] == [
        ["verified", "1", "2", "mlp.experts"],
        ["rejected", "3", "0", "mlp.experts"],
    ]
    assert rows[0][4] == "400.0" and rows[1][4] == "∞"
    evidence = _between(html, f'id="se-{SHA_A[:12]}-1-2"', "</article>")
    assert "pruning it multiplies perplexity by 12.38" in evidence
    runs = [row[0] for row in Rows(evidence, None).rows if row]
    assert runs[-4:] == [
        "baseline",
        "pruned",
        "control: random expert 1",
        "control: random expert 2",
    ]
    assert "expert 0 of the layer pruned" in evidence and "expert 3 of the layer pruned" in evidence
    assert "detected and validated by swreg 0.1.0" in evidence


def test_the_experts_heat_map_is_a_cacheable_png(client):
    page = client.get(f"/models/{MODEL}").text
    assert f"{BASE}/plots/experts.png" in page
    response = client.get(f"{BASE}/plots/experts.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG" and image.size == (1000, 460)
    etag = response.headers["etag"]
    assert (
        client.get(f"{BASE}/plots/experts.png", headers={"If-None-Match": etag}).status_code == 304
    )


def test_a_dense_revision_has_no_experts_plot_nor_section(client):
    missing = client.get(f"/api/v1/models/org/dense/revisions/{SHA_A}/plots/experts.png")
    assert missing.status_code == 404
    assert "no per-expert profile" in missing.json()["error"]["message"]
    page = client.get("/models/org/dense").text
    assert "experts.png" not in page and "Super experts" not in page


def test_the_heat_map_grid_leaves_unrouted_experts_empty_and_keeps_the_peak():
    profiles = Report.model_validate(moe_report()).expert_profile
    layers, grid = plots.expert_grid(profiles)
    assert layers == [0, 1, 2, 3] and grid.shape == (4, 4)
    assert math.isnan(grid[2, 3])  # never routed to: nothing measured, drawn grey
    assert grid[1, 2] == 400.0 and np.nanargmax(grid) == 1 * 4 + 2
