"""Mixture-of-experts detection reports as a worker hands them to the registry (valid per the
report contract): coordinates inside routed experts (a per-expert 2-D tensor and a fused 3-D
tensor), super experts with detection and validation evidence, and the per-expert profile.

The numbers are made up for the registry's tests (storage, API, index, web page): the science
that finds them is tested under tests/workers."""

import copy

from tests.helpers import EVAL, _score, coordinate, report

NUM_EXPERTS = 4
# (layer, expert) of the report's super expert, and of a rejected one (a spike that pruning the
# expert does not turn into a perplexity change).
SUPER_EXPERT = (1, 2)
REJECTED_EXPERT = (3, 0)


def expert_coordinate(
    layer: int,
    expert: int,
    index: list[int],
    row: int,
    col: int,
    value: float,
    state: str,
    *,
    tensor: str,
    module: str,
    ablated: float,
) -> dict:
    """A coordinate inside routed expert `expert`, at `index` as `tensor` stores it."""
    found = coordinate(layer, row, col, value, state, ablated=ablated, tensor=tensor)
    return {**found, "index": index, "module": module, "expert": expert}


def super_expert(
    layer: int, expert: int, state: str, *, max_abs_output: float, pruned: float
) -> dict:
    """A super expert with its detection observations and its validation by pruning (routed to,
    output zero) against random experts of the same layer."""
    base = _score(20.19, 20.19)
    del base["ratio"]
    return {
        "layer": layer,
        "expert": expert,
        "module": "mlp.experts",
        "state": state,
        "max_abs_output": max_abs_output,
        "spike_ratio": max_abs_output / 12.0,
        "row": 5,
        "tokens_routed": 9,
        "evidence": {
            "detection": {
                "observations": [{"prompt": 0, "token": 0, "max_abs_output": max_abs_output}]
            },
            "validation": {
                "eval": EVAL,
                "baseline": base,
                "pruned": _score(pruned, 20.19),
                # One control per random expert of the layer, pruned the same way.
                "controls": {
                    "random expert 1": _score(20.3, 20.19, experts=[0]),
                    "random expert 2": _score(20.25, 20.19, experts=[3]),
                },
                "verdict": {
                    "state": state,
                    "reason": f"pruning it multiplies perplexity by {pruned / 20.19:.2f}",
                },
            },
        },
    }


def expert_profile(num_layers: int) -> list[dict]:
    """Every layer's routed experts: tokens routed and largest |down-projection output|; the
    super expert stands out, expert 3 of layer 2 is never routed to."""
    layers = []
    for layer in range(num_layers):
        experts = []
        for expert in range(NUM_EXPERTS):
            peak = 400.0 if (layer, expert) == SUPER_EXPERT else 1.0 + layer + expert / 10
            dead = (layer, expert) == (2, 3)
            experts.append(
                {
                    "expert": expert,
                    "tokens": 0 if dead else 5 + expert,
                    "max_abs_output": 0.0 if dead else peak,
                    "output_row": None if dead else 5,
                    "output_token": None if dead else 0,
                    "prompt": None if dead else 0,
                }
            )
        layers.append({"layer": layer, "experts": experts})
    return layers


# A fused tensor of all experts' down projections, [experts, in, out] as gpt-oss stores it, and a
# per-expert tensor as Qwen3-MoE stores it ([out, in] of one expert).
FUSED_TENSOR = "model.layers.1.mlp.experts.down_proj"
PER_EXPERT_TENSOR = "model.layers.{layer}.mlp.experts.{expert}.down_proj.weight"


def moe_report(num_layers: int = 4) -> dict:
    """A 4-layer MoE report: a verified super weight inside expert 2 of layer 1 (in a fused
    tensor: three indices), a rejected one inside expert 1 of layer 3 (in a per-expert tensor);
    the super expert (1, 2) verified, (3, 0) rejected (its largest |output| overflowed to
    infinity); the per-expert profile."""
    result = report(num_layers=num_layers)
    result["model"]["model_type"] = "gpt_oss"
    result["model"]["architecture"] = "GptOssForCausalLM"
    result["super_weights"] = [
        expert_coordinate(
            1,
            2,
            [2, 7, 5],
            row=5,
            col=7,
            value=3.5,
            state="verified",
            tensor=FUSED_TENSOR,
            module="mlp.experts.down_proj",
            ablated=300.0,
        ),
        expert_coordinate(
            3,
            1,
            [5, 6],
            row=5,
            col=6,
            value=-0.25,
            state="rejected",
            tensor=PER_EXPERT_TENSOR.format(layer=3, expert=1),
            module="mlp.experts.down_proj",
            ablated=20.19,
        ),
    ]
    result["super_experts"] = [
        super_expert(*SUPER_EXPERT, "verified", max_abs_output=400.0, pruned=250.0),
        super_expert(*REJECTED_EXPERT, "rejected", max_abs_output=float("inf"), pruned=20.2),
    ]
    result["expert_profile"] = expert_profile(num_layers)
    return copy.deepcopy(result)
