"""Mixture-of-experts analysis on planted tiny checkpoints of six families, in every disk layout
(one 2-D tensor per expert; one fused 3-D tensor, [experts, in, out] and [experts, out, in]),
with a shared expert and with a dense first layer: the super weight inside the routed super
expert found and verified, the super expert found and verified by pruning against random routed
experts, the decoy (the largest weight of another expert, on a dead channel) and the unreached
expert (it would spike, but no token is routed to it) never reported; the naive whole-model path
agrees; the capture and the ablations are exact."""

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from workers.fixtures.planted_moe import MOE_FAMILIES, build_planted_moe
from workers.science.checkpoint import open_checkpoint
from workers.science.experts import expert_matrix, recording_experts
from workers.science.pipeline.naive import analyse_naive
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse
from workers.science.streaming import LayerStreamer
from workers.science.validation.ablation import pruned, zeroed_in_expert

pytestmark = pytest.mark.usefixtures("one_thread")

# Enough evaluation tokens for a clear verdict on the tiny models, few enough to stay fast.
EVAL_TOKENS = 512


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    built = {}

    def build(family: str):
        if family not in built:
            built[family] = build_planted_moe(family, tmp_path_factory.mktemp(family))
        return built[family]

    return build


@pytest.fixture(scope="module")
def reports(planted):
    done = {}

    def report(family: str):
        if family not in done:
            done[family] = analyse(planted(family).path, AnalysisOptions(eval_tokens=EVAL_TOKENS))
        return done[family]

    return report


def _stored_value(path, tensor: str, index: list[int]) -> float:
    for file in path.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            if tensor in f.keys():  # noqa: SIM118 - safe_open has no __contains__
                return float(f.get_tensor(tensor)[tuple(index)])
    raise KeyError(tensor)


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_the_super_weight_inside_the_super_expert_is_found_and_verified(family, planted, reports):
    p, report = planted(family), reports(family)
    verified = [c for c in report.super_weights if c.state == "verified"]
    assert len(verified) == 1
    weight = verified[0]
    assert (weight.layer, weight.expert, weight.row, weight.col) == (
        p.layer,
        p.super_expert,
        p.row,
        p.col,
    )
    # Named as the checkpoint stores it: the tensor and index hold the planted value.
    assert _stored_value(p.path, weight.tensor, weight.index) == pytest.approx(p.value)
    if p.family.layout == "per_expert":
        assert weight.index == [p.row, p.col] and f".{p.super_expert}." in weight.tensor
    elif p.family.layout == "fused_in_out":
        assert weight.index == [p.super_expert, p.col, p.row]
    else:
        assert weight.index == [p.super_expert, p.row, p.col]
    validation = weight.evidence.validation
    assert validation.ablated.interval.low >= 2.0
    assert set(validation.controls) == {"random", "top_k"}


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_the_super_expert_is_verified_by_pruning_against_random_routed_experts(
    family, planted, reports
):
    p, report = planted(family), reports(family)
    assert [(e.layer, e.expert) for e in report.super_experts] == [(p.layer, p.super_expert)]
    expert = report.super_experts[0]
    assert expert.state == "verified" and expert.row == p.row
    validation = expert.evidence["validation"]
    assert validation["pruned"]["interval"]["low"] >= 2.0
    pruned_controls = {e for c in validation["controls"].values() for e in c["experts"]}
    assert pruned_controls and pruned_controls <= set(p.routed)
    assert all(c["interval"]["high"] < 2.0 for c in validation["controls"].values())


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_the_decoy_and_the_unreached_expert_are_never_reported(family, planted, reports):
    p, report = planted(family), reports(family)
    places = {(c.layer, c.expert, c.row, c.col) for c in report.super_weights}
    assert (p.layer, p.decoy_expert, p.decoy_row, p.decoy_col) not in places
    assert not any(c.expert in p.unreached for c in report.super_weights if c.layer == p.layer)
    assert not any(e.expert in p.unreached for e in report.super_experts)
    profile = next(e for e in report.expert_profile if e.layer == p.layer)
    seen = {e.expert: e.tokens for e in profile.experts}
    assert not set(seen) & set(p.unreached)
    assert all(seen[e] > 0 for e in (p.super_expert, *p.routed))


def test_a_shared_expert_and_a_dense_first_layer_are_read_as_such(planted, reports):
    report = reports("deepseek_v3")
    found = report.feed_forward
    assert found.dense_layers == [0] and found.shared_expert is not None
    # Every layer profiled; routed experts profiled from layer 1 on.
    assert [p.layer for p in report.profile] == list(range(report.model.num_layers))
    assert [p.layer for p in report.expert_profile] == list(range(1, report.model.num_layers))


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_the_naive_path_gives_the_same_verdicts(family, planted, reports):
    p = planted(family)
    streamed = reports(family)
    naive = analyse_naive(p.path, AnalysisOptions(eval_tokens=EVAL_TOKENS))

    def states(report):
        return (
            sorted((c.tensor, tuple(c.index), c.state) for c in report.super_weights),
            sorted((e.layer, e.expert, e.state) for e in report.super_experts),
        )

    assert states(naive) == states(streamed)


def test_the_capture_sees_each_experts_down_projection_input_on_its_routed_tokens(planted):
    """The recorder's X for an expert equals act(gate) * up computed by hand from the loaded
    weights on the tokens the router sent it, and X W^T its output."""
    p = planted("qwen3_moe")
    model = AutoModelForCausalLM.from_pretrained(p.path, dtype=torch.float32).eval()
    checkpoint = open_checkpoint(p.path)
    site = checkpoint.feed_forward.routed_site(p.layer)
    experts = model.model.layers[p.layer].get_submodule(site.module)
    seen = []
    handle = experts.register_forward_pre_hook(lambda _m, args: seen.append(args))
    ids = torch.tensor([[1, 72, 101, 108, 108, 111]])
    with torch.no_grad(), recording_experts(experts, site) as recorder:
        model(input_ids=ids, use_cache=False)
    handle.remove()
    hidden, top_k_index, _ = seen[0]
    flat = hidden.reshape(-1, hidden.shape[-1])
    assert {c.expert for c in recorder.calls} == set(top_k_index.unique().tolist())
    for call in recorder.calls:
        tokens = torch.nonzero((top_k_index == call.expert).any(dim=-1)).view(-1)
        assert call.tokens.tolist() == tokens.tolist()
        gate, up = (flat[tokens] @ experts.gate_up_proj[call.expert].t()).chunk(2, dim=-1)
        x = torch.nn.functional.silu(gate) * up
        torch.testing.assert_close(call.inputs, x)
        torch.testing.assert_close(call.outputs, x @ experts.down_proj[call.expert].t())


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss"])
def test_zeroing_and_pruning_put_every_weight_back_exactly(family, planted):
    p = planted(family)
    model = AutoModelForCausalLM.from_pretrained(p.path, dtype=torch.float32).eval()
    site = open_checkpoint(p.path).feed_forward.routed_site(p.layer)
    experts = model.get_submodule(f"model.layers.{p.layer}.{site.module}")
    before = {n: t.clone() for n, t in experts.named_parameters()}
    with zeroed_in_expert(experts, site, p.super_expert, [(p.row, p.col)]):
        assert expert_matrix(experts, site, p.super_expert)[p.row, p.col] == 0
        assert expert_matrix(experts, site, p.decoy_expert)[p.decoy_row, p.decoy_col] != 0
    with pruned(experts, site, [p.super_expert]):
        assert not expert_matrix(experts, site, p.super_expert).any()
        assert expert_matrix(experts, site, p.routed[0]).any()
    for name, tensor in experts.named_parameters():
        assert torch.equal(tensor, before[name]), name


def test_per_expert_tensors_are_streamed_into_the_models_fused_parameters(planted):
    """The streamer builds a fused parameter from one stored tensor per expert exactly as
    transformers' own loading does."""
    p = planted("mixtral")
    loaded = AutoModelForCausalLM.from_pretrained(p.path, dtype=torch.float32).eval()
    streamer = LayerStreamer(open_checkpoint(p.path))
    try:
        layer = streamer.load_layer(p.layer)
        for name, tensor in layer.named_parameters():
            torch.testing.assert_close(
                tensor, loaded.get_parameter(f"model.layers.{p.layer}.{name}"), rtol=0, atol=0
            )
        assert any(n.endswith(".experts.gate_up_proj") for n in streamer.converted)
        assert any(n.endswith(".experts.down_proj") for n in streamer.stacked)
    finally:
        streamer.close()
