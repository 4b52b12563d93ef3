"""The plot endpoints (real images of the declared type, cacheable) and the profile endpoint, over
FastAPI's test client on real databases."""

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from registry.app import create_app
from registry.database import transaction
from registry.superweights import service
from tests.helpers import SHA_A, quantization_check

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
BASE = f"/api/v1/models/{MODEL}/revisions/{SHA_A}"
SUPER_WEIGHT = {"tensor": "model.layers.11.mlp.down_proj.weight", "index": "507,1229"}


@pytest.fixture
def client(db_url, db_sessions, published, report):
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id=MODEL, revision=SHA_A, revision_kind="commit", report=report
        )
    with TestClient(create_app(db_url)) as client:
        yield client


def _png(response) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG"
        image.verify()  # the whole file decodes
        return image.size


def test_profile_plot_is_a_png(client):
    assert _png(client.get(f"{BASE}/plots/profile.png")) == (1000, 420)


def test_ablation_plot_is_a_png(client):
    assert _png(client.get(f"{BASE}/plots/ablation.png", params=SUPER_WEIGHT)) == (1000, 340)


def test_the_quantization_check_is_plotted_and_shown_on_the_model_page(client, db_sessions):
    missing = client.get(f"{BASE}/plots/quantization.png")
    assert missing.status_code == 404
    assert "no quantization check" in missing.json()["error"]["message"]
    assert "Quantization check" not in client.get(f"/models/{MODEL}").text
    with transaction(db_sessions) as session:
        service.record_quantization_check(
            session, service.get_revision(session, MODEL, SHA_A), quantization_check()
        )
    assert _png(client.get(f"{BASE}/plots/quantization.png")) == (1000, 360)
    page = client.get(f"/models/{MODEL}").text
    assert "Quantization check" in page and f"{BASE}/plots/quantization.png" in page
    # One row per width and block, each variant's perplexity with its ratio to full precision;
    # the destroyed model (an infinite perplexity) spelled out.
    assert (
        '<td>int4</td><td>64</td><td class="num">–</td><td class="num">189.60 (×7.403)</td>'
        '<td class="num">64.65 (×2.524)</td>' in page
    )
    assert '<td>int3</td><td>row</td><td class="num">–</td><td class="num">∞ (×∞)</td>' in page


def test_plots_carry_a_strong_etag_and_answer_304(client):
    first = client.get(f"{BASE}/plots/profile.png")
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "max-age=" in first.headers["cache-control"]
    again = client.get(f"{BASE}/plots/profile.png")
    assert again.content == first.content and again.headers["etag"] == etag
    cached = client.get(f"{BASE}/plots/profile.png", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    other = client.get(
        f"{BASE}/plots/ablation.png", params=SUPER_WEIGHT, headers={"If-None-Match": etag}
    )
    assert other.status_code == 200 and other.headers["etag"] != etag


def test_a_retraction_changes_the_plot_and_its_etag(client, db_sessions):
    before = client.get(f"{BASE}/plots/profile.png")
    with transaction(db_sessions) as session:
        sw = service.get_coordinate(session, MODEL, SHA_A, SUPER_WEIGHT["tensor"], [507, 1229])
        service.retract(session, sw, "test")
    after = client.get(
        f"{BASE}/plots/profile.png", headers={"If-None-Match": before.headers["etag"]}
    )
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]


def test_the_profile_is_served_as_json(client, report):
    profile = client.get(f"{BASE}/profile").json()
    assert profile["prompts"] == report["prompts"]
    assert profile["layers"] == report["profile"]
    lookup = client.get(f"/api/v1/models/{MODEL}", params={"revision": SHA_A}).json()
    assert lookup["revisions"][0]["profile"] == profile


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        (
            "/api/v1/models/huggyllama/llama-7b/revisions/unknown/plots/profile.png",
            {},
            404,
            "no per-layer profile",
        ),
        (
            "/api/v1/models/huggyllama/llama-7b/revisions/unknown/profile",
            {},
            404,
            "no per-layer profile",
        ),
        (
            "/api/v1/models/huggyllama/llama-7b/revisions/unknown/plots/ablation.png",
            {"tensor": "model.layers.2.mlp.down_proj.weight", "index": "3968,7003"},
            404,
            "no ablation evidence",
        ),
        (f"{BASE}/plots/ablation.png", {"tensor": "t", "index": "507,x"}, 422, "query.index"),
        (
            f"{BASE}/plots/ablation.png",
            {"tensor": "model.layers.11.mlp.down_proj.weight", "index": "1,2"},
            404,
            "no coordinate",
        ),
        (f"/api/v1/models/{MODEL}/revisions/main/plots/profile.png", {}, 422, "revision"),
        (
            f"/api/v1/models/nobody/nothing/revisions/{SHA_A}/plots/profile.png",
            {},
            404,
            "no revision",
        ),
    ],
)
def test_what_cannot_be_drawn_is_a_one_line_error(client, path, params, status, message):
    response = client.get(path, params=params)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_search_filters_models(client):
    found = client.get("/api/v1/models", params={"q": "LLAMA-2"}).json()
    assert [m["model_id"] for m in found["items"]] == [
        "meta-llama/Llama-2-13b-hf",
        "meta-llama/Llama-2-7b-hf",
    ]
    assert found["total"] == 2
    # LIKE's wildcards are literal characters in a search.
    assert client.get("/api/v1/models", params={"q": "%"}).json()["total"] == 0
    assert client.get("/api/v1/models", params={"q": "_"}).json()["total"] == 0
