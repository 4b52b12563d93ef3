"""Detection and validation on tiny models with planted super weights, for every architecture
in the table: the exact coordinates come back, the dead-channel decoy does not, ablating a
planted weight changes the output a lot and the controls do not."""

import pytest
from safetensors import safe_open

from tests.helpers import TINY_EVAL_TOKENS
from tests.workers.science.test_feed_forward import EXPECTED
from workers.fixtures.planted import SUPPORTED_MODEL_TYPES as ALL_MODEL_TYPES
from workers.science.pipeline.naive import analyse_naive
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse

# A planted super weight moves the next-token distribution by several nats; the controls by
# almost nothing (the fixtures are built so: see tests/workers/fixtures/test_planted.py).
MIN_ABLATION_KL = 0.5
MAX_CONTROL_KL = 0.01


def _reports(planted_models, sequential: bool):
    cache = {}

    def get(model_type: str):
        if model_type not in cache:
            planted = planted_models(model_type)
            cache[model_type] = (
                planted,
                analyse(
                    planted.path,
                    AnalysisOptions(eval_tokens=TINY_EVAL_TOKENS, sequential=sequential),
                ).as_json_dict(),
            )
        return cache[model_type]

    return get


@pytest.fixture(scope="module")
def reports(planted_reports):
    """Sequential evaluation, as `swreg detect` runs by default: one analysis per model type,
    shared by the session (tests/conftest.py)."""
    return planted_reports


@pytest.fixture(scope="module")
def exhaustive_reports(planted_models):
    """Every variant scored on the whole budget."""
    return _reports(planted_models, sequential=False)


def _by_coordinate(report):
    return {(sw["layer"], sw["row"], sw["col"]): sw for sw in report["super_weights"]}


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_planted_super_weights_are_found_and_verified(reports, model_type):
    planted, report = reports(model_type)
    found = _by_coordinate(report)
    verified = {key for key, sw in found.items() if sw["state"] == "verified"}
    assert verified == {(p.layer, p.row, p.col) for p in planted.plants}
    with safe_open(planted.path / "model.safetensors", framework="pt") as weights:
        for plant in planted.plants:
            sw = found[(plant.layer, plant.row, plant.col)]
            assert sw["tensor"] == planted.down_proj_tensor(plant.layer)
            assert tuple(sw["index"]) == planted.stored_index(plant)
            stored = weights.get_tensor(sw["tensor"])[tuple(sw["index"])]
            assert sw["value"] == pytest.approx(float(stored))
            assert sw["module"] == EXPECTED[model_type][1]


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_dead_channel_decoy_is_not_reported(reports, model_type):
    planted, report = reports(model_type)
    decoy = planted.dead
    assert decoy is not None
    assert (decoy.layer, decoy.row, decoy.col) not in _by_coordinate(report)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_ablation_changes_the_output_and_controls_do_not(reports, model_type):
    planted, report = reports(model_type)
    found = _by_coordinate(report)
    for plant in planted.plants:
        validation = found[(plant.layer, plant.row, plant.col)]["evidence"]["validation"]
        assert validation["ablated"]["mean_kl_from_baseline"] > MIN_ABLATION_KL
        assert validation["controls"]["random"]["mean_kl_from_baseline"] < MAX_CONTROL_KL
        assert validation["controls"]["random"]["weights"] == 100
        assert validation["controls"]["top_k"]["k"] == 10
        # The super activation moves when the weight is zeroed and is put back on restore.
        ablated = validation["super_activation"]["ablated"][0]
        restored = validation["super_activation"]["restored"][0]
        assert abs(ablated["after"][0] - ablated["before"][0]) > 0.2 * abs(ablated["before"][0])
        assert restored["after"] == pytest.approx(restored["before"])


def test_two_weights_in_one_row_are_both_reported_with_their_shares(reports):
    planted, report = reports("llama")
    rows = {p.row for p in planted.plants}
    assert len(rows) == 1 and len(planted.plants) == 2
    shares = [
        sw["evidence"]["detection"]["mean_share"]
        for sw in report["super_weights"]
        if (sw["layer"], sw["row"], sw["col"]) in {(p.layer, p.row, p.col) for p in planted.plants}
    ]
    assert len(shares) == 2 and all(0.1 <= s <= 1.0 for s in shares)
    assert all(
        sw["evidence"]["detection"]["stability"] == 1.0
        for sw in report["super_weights"]
        if sw["state"] == "verified"
    )


def test_profile_shows_the_spike_at_the_planted_layer(reports):
    planted, report = reports("llama")
    layer = planted.plants[0].layer
    profile = report["profile"]
    assert len(profile) == report["model"]["num_layers"]
    assert profile[layer]["spike"] is True
    assert profile[layer]["output_row"] == planted.plants[0].row
    assert profile[0]["spike"] is False


def _states(report) -> list[tuple]:
    return [(sw["tensor"], sw["index"], sw["state"]) for sw in report["super_weights"]]


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_sequential_and_exhaustive_evaluations_give_the_same_verdicts(
    reports, exhaustive_reports, model_type
):
    _, sequential = reports(model_type)
    _, exhaustive = exhaustive_reports(model_type)
    assert _states(sequential) == _states(exhaustive)
    run, full = sequential["validation"], exhaustive["validation"]
    assert full["variant_tokens"] == full["exhaustive_variant_tokens"]
    # The planted weights are far from the threshold: every variant stops after one window.
    assert run["variant_tokens"] < full["variant_tokens"] / 2
    for sw in sequential["super_weights"]:
        assert sw["evidence"]["validation"]["ablated"]["stopped_early"]


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "falcon", "gemma2"])
def test_streamed_sweep_agrees_with_the_naive_full_model_path(
    reports, exhaustive_reports, model_type
):
    planted, sequential = reports(model_type)
    _, streamed = exhaustive_reports(model_type)
    naive = analyse_naive(
        planted.path, AnalysisOptions(eval_tokens=TINY_EVAL_TOKENS)
    ).as_json_dict()
    assert _states(sequential) == _states(naive)
    assert [sw["index"] for sw in streamed["super_weights"]] == [
        sw["index"] for sw in naive["super_weights"]
    ]
    for a, b in zip(streamed["super_weights"], naive["super_weights"], strict=True):
        assert (a["tensor"], a["state"], a["value"]) == (b["tensor"], b["state"], b["value"])
        va, vb = a["evidence"]["validation"], b["evidence"]["validation"]
        for part in ("baseline", "ablated", "restored"):
            assert va[part]["perplexity"] == pytest.approx(vb[part]["perplexity"], rel=1e-4)
        assert va["ablated"]["interval"]["low"] == pytest.approx(
            vb["ablated"]["interval"]["low"], rel=1e-3
        )
        for control in ("random", "top_k"):
            assert va["controls"][control]["perplexity"] == pytest.approx(
                vb["controls"][control]["perplexity"], rel=1e-4
            )
    # The streamed job runs the prompts as one padded batch, the naive path one by one: every
    # prompt's figures agree.
    for a, b in zip(streamed["profile"], naive["profile"], strict=True):
        assert a["max_abs_output_per_prompt"] == pytest.approx(
            b["max_abs_output_per_prompt"], rel=1e-4
        )
        assert (a["input_col"], a["output_row"], a["output_token"]) == (
            b["input_col"],
            b["output_row"],
            b["output_token"],
        )
    # Each round reads the layers it needs once.
    rounds = streamed["validation"]["rounds"]
    assert streamed["bytes_read"] <= rounds * streamed["model"]["weight_bytes"]
