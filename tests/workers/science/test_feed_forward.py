"""The feed-forward output projection found by structure (workers.science.feed_forward)."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from transformers import AutoConfig

from workers.fixtures.planted import SUPPORTED_MODEL_TYPES
from workers.fixtures.tiny import tiny_config
from workers.science import feed_forward as ff
from workers.science.errors import UnsupportedArchitecture
from workers.science.feed_forward import InputForm, Layout, SiteKind

# What the hand table of swreg <= issue 18 said for its 14 architectures: (layers, down
# projection, layout). Structure must find the same.
HAND_TABLE = {
    **{
        name: ("model.layers", "mlp.down_proj", Layout.OUT_IN)
        for name in (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "phi3",
        )
    },
    "gpt_neox": ("gpt_neox.layers", "mlp.dense_4h_to_h", Layout.OUT_IN),
    "falcon": ("transformer.h", "mlp.dense_4h_to_h", Layout.OUT_IN),
    "gpt2": ("transformer.h", "mlp.c_proj", Layout.IN_OUT),
    "opt": ("model.decoder.layers", "fc2", Layout.OUT_IN),
}
# ... and its attention kernels: eager where transformers has no SDPA version.
HAND_ATTENTION = {"gemma2": "eager"}
# Every planted fixture's architecture, the hybrid included.
EXPECTED = {**HAND_TABLE, "qwen3_5_text": ("model.layers", "mlp.down_proj", Layout.OUT_IN)}


def test_every_planted_architecture_is_expected():
    assert set(SUPPORTED_MODEL_TYPES) == set(EXPECTED)


@pytest.mark.parametrize("model_type", sorted(EXPECTED))
def test_structure_finds_what_the_hand_table_said(model_type):
    found = ff.discover(tiny_config(model_type))
    layers, down, layout = EXPECTED[model_type]
    assert (found.layers, found.found_by, found.num_layers) == (layers, "structure", 2)
    for layer in range(found.num_layers):
        site = found.dense_site(layer)
        assert (site.module, site.parameter, site.layout) == (down, "weight", layout)
        assert found.sites[layer] == (site,)
    assert found.attention == HAND_ATTENTION.get(model_type, "sdpa")


@pytest.mark.parametrize(
    ("model_type", "form"),
    [
        ("llama", InputForm.GATED),
        ("gpt_neox", InputForm.UNGATED),
        ("gpt2", InputForm.UNGATED),
        ("phi3", InputForm.FUSED_GATE_UP),
        ("opt", InputForm.UNGATED),
    ],
)
def test_the_input_form_is_read_from_the_input_projections(model_type, form):
    assert ff.discover(tiny_config(model_type)).dense_site(0).input_form is form


def test_a_fused_query_key_value_twice_the_attention_width_is_not_a_feed_forward_block():
    # Phi-3 with 4 query heads and 2 key/value heads: qkv_proj is [2 * 64, 64], o_proj [64, 64]:
    # by shape alone the attention reads as a fused gate/up block.
    found = ff.discover(tiny_config("phi3"))
    assert [s.module for s in found.sites[0]] == ["mlp.down_proj"]


def test_the_output_projection_of_a_block_whose_inner_width_is_the_hidden_size():
    config = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=260,
    )
    site = ff.discover(config).dense_site(0)
    assert (site.module, site.input_form) == ("mlp.down_proj", InputForm.GATED)


class _Toy(nn.Module):
    """A decoder layer with a wide gated block and a narrow low-rank side branch."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.branch = nn.ModuleDict(
            {"left": nn.Linear(d, 2, bias=False), "right": nn.Linear(2, d, bias=False)}
        )
        self.mlp = nn.ModuleDict(
            {
                "gate": nn.Linear(d, 32, bias=False),
                "up": nn.Linear(d, 32, bias=False),
                "down": nn.Linear(32, d, bias=False),
            }
        )


def test_the_gated_block_wins_over_a_narrow_side_branch():
    sites = ff.layer_sites(_Toy(), d_model=8)
    assert [(s.module, s.input_form, s.inner) for s in sites] == [("mlp.down", InputForm.GATED, 32)]


def test_layers_without_a_feed_forward_block_have_no_site():
    # Zamba: Mamba layers, and hybrid layers with a shared attention + MLP block.
    found = ff.discover(tiny_config("zamba"))
    assert [bool(s) for s in found.sites] == [False, True]
    assert found.mixers == ("ZambaMambaMixer",)


@pytest.mark.parametrize("model_type", ["mamba", "rwkv", "falcon_mamba"])
def test_a_model_with_no_feed_forward_block_is_refused(model_type):
    with pytest.raises(UnsupportedArchitecture, match="has no feed-forward block"):
        ff.discover(tiny_config(model_type))


@pytest.mark.parametrize(
    ("model_type", "what"), [("bart", "an encoder-decoder"), ("bert", "an encoder")]
)
def test_a_model_that_is_not_decoder_only_is_refused(model_type, what):
    with pytest.raises(UnsupportedArchitecture, match=f"not decoder-only \\({what}"):
        ff.discover(tiny_config(model_type))


def test_fused_routed_experts_in_both_index_orders():
    mixtral = ff.discover(tiny_config("mixtral")).routed_site(0)
    assert (mixtral.module, mixtral.parameter, mixtral.layout) == (
        "mlp.experts",
        "down_proj",
        Layout.EXPERTS_OUT_IN,
    )
    assert (mixtral.num_experts, mixtral.input_form) == (4, InputForm.FUSED_GATE_UP)
    gpt_oss = ff.discover(tiny_config("gpt_oss")).routed_site(0)
    assert (gpt_oss.layout, gpt_oss.is_transposed, gpt_oss.input_form) == (
        Layout.EXPERTS_IN_OUT,
        True,
        InputForm.INTERLEAVED,
    )


def test_a_shared_expert_and_dense_first_layers():
    found = ff.discover(tiny_config("deepseek_v3"))  # first_k_dense_replace = 1
    assert [s.kind for s in found.sites[0]] == [SiteKind.LINEAR]
    assert [s.kind for s in found.sites[1]] == [SiteKind.ROUTED_EXPERTS, SiteKind.SHARED_EXPERT]
    assert found.sites[1][1].module == "mlp.shared_experts.down_proj"
    assert found.routed_layers == [1]


@pytest.mark.parametrize(
    ("model_type", "call"),
    [
        ("mixtral", "routed"),
        ("gpt_oss", "routed"),
        ("llama4_text", "dense"),
        ("jetmoe", "(inputs, expert_size)"),
    ],
)
def test_each_experts_calling_convention_is_recorded_and_accepted(model_type, call):
    found = ff.discover(tiny_config(model_type))
    assert found.routed_site(found.routed_layers[0]).call == call
    ff.check_executable(found)


def test_experts_called_another_way_are_refused_in_one_place():
    found = ff.discover(tiny_config("mixtral"))
    layer = found.routed_layers[0]
    odd = replace(found.routed_site(layer), call="(x, y)")
    sites = list(found.sites)
    sites[layer] = (odd,)
    with pytest.raises(UnsupportedArchitecture, match=r"called as \(x, y\)"):
        ff.check_executable(replace(found, sites=tuple(sites)))


def test_a_sliding_window_is_recorded():
    assert ff.discover(tiny_config("mistral")).sliding_window == 4096
    assert ff.discover(tiny_config("llama")).sliding_window is None


def test_dense_site_indexing():
    site = ff.ProjectionSite(SiteKind.CONV1D, "mlp.c_proj", "weight", Layout.IN_OUT, None, inner=4)
    weight = torch.arange(12.0).reshape(4, 3)  # [in, out]
    assert site.stored_index(2, 1) == [1, 2]
    assert site.out_in(weight)[2, 1] == weight[1, 2]
