"""Super weights in layer 0 whose super activation is on the first token only, as in real models,
for every architecture in the table, on models whose context (256 tokens) is shorter than swreg's
evaluation window: found, verified, judged within their own layer, the decoy never reported, and
every window scored fits the model."""

import pytest

from workers.fixtures.planted import FIRST_TOKEN_MODEL_TYPES as ALL_MODEL_TYPES
from workers.science.context import model_context
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse

# Two windows: the super activation must be found on the first token of each.
EVAL_TOKENS = 512

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reports(first_token_models):
    cache = {}

    def get(model_type: str):
        if model_type not in cache:
            planted = first_token_models(model_type)
            # Every window scored (the exhaustive evaluation): the super activation is checked
            # on each of them.
            options = AnalysisOptions(eval_tokens=EVAL_TOKENS, sequential=False)
            report = analyse(planted.path, options)
            cache[model_type] = planted, report.as_json_dict()
        return cache[model_type]

    return get


def _planted_keys(planted) -> set[tuple[int, int, int]]:
    return {(p.layer, p.row, p.col) for p in planted.plants}


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_layer_0_super_weights_on_the_first_token_are_found_and_verified(reports, model_type):
    planted, report = reports(model_type)
    assert planted.first_token and {p.layer for p in planted.plants} == {0}
    found = {(sw["layer"], sw["row"], sw["col"]): sw for sw in report["super_weights"]}
    verified = {key for key, sw in found.items() if sw["state"] == "verified"}
    assert verified == _planted_keys(planted)
    for plant in planted.plants:
        sw = found[(plant.layer, plant.row, plant.col)]
        assert tuple(sw["index"]) == planted.stored_index(plant)
        assert sw["value"] == pytest.approx(plant.value)
        # Layer 0 has no earlier layer: it was judged against its own median output.
        observations = sw["evidence"]["detection"]["observations"]
        assert {o["spike_rule"] for o in observations} == {"within_layer"}
        assert {o["token"] for o in observations} == {0}
    decoy = planted.dead
    assert (decoy.layer, decoy.row, decoy.col) not in found


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_the_super_activation_is_on_the_first_token_of_every_window(reports, model_type):
    planted, report = reports(model_type)
    plant = planted.plants[0]
    sw = next(
        s
        for s in report["super_weights"]
        if (s["layer"], s["row"], s["col"]) == (plant.layer, plant.row, plant.col)
    )
    validation = sw["evidence"]["validation"]
    windows = validation["super_activation"]["restored"]
    assert len(windows) == report["eval"]["windows"] == 2
    assert [w["tokens"] for w in windows] == [[0], [0]]
    assert validation["restored"]["ratio"] == pytest.approx(1.0, abs=0.01)
    assert validation["controls"]["random"]["ratio"] == pytest.approx(1.0, abs=0.01)
    profile = report["profile"]
    assert profile[0]["spike"] and profile[0]["spike_ratio"] is None
    assert profile[0]["output_token"] == 0 and profile[0]["output_row"] == plant.row
    assert not any(p["spike"] for p in profile[1:])


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_every_window_fits_the_short_context(reports, model_type):
    planted, report = reports(model_type)
    context = model_context(planted.config)
    evaluation = report["eval"]
    assert (evaluation["context_tokens"], evaluation["context_source"]) == context
    assert evaluation["window_tokens"] == context.tokens < EVAL_TOKENS
    assert evaluation["tokens"] == EVAL_TOKENS
