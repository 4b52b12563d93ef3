"""The quantization check on a mixture-of-experts layer: the fused expert tensors transformers 5
holds (Qwen3-MoE `[experts, out, in]`, gpt-oss `[experts, in, out]`) are found beside the
linear weights, each expert's matrix is quantized on its own (its own blocks and clipping
threshold), a super weight inside an expert is kept by `clip_keep` and lost by `clip`, and the
layer comes back exactly. Real decoder layers of tiny models built from transformers' configs."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GptOssConfig, Qwen3MoeConfig

from workers.contract.quantization import KeptWeight
from workers.science.pipeline.quantize import (
    ALL_WEIGHTS,
    DOWN_PROJ_ONLY,
    LayerVariants,
    layer_matrices,
)
from workers.science.quantization import ClipRule, Setting, Variant, clip_threshold, quantize_rtn

SMALL = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 64,
    "head_dim": 8,
}
EXPERTS, EXPERT, ROW, COL = 4, 2, 5, 3
# Far outside the bulk of its matrix (the clipping rule clips beyond 10 x the RMS).
SUPER_WEIGHT = 25.0
BITS, BLOCK = 3, 8
CONFIGS = {
    "qwen3_moe": (
        Qwen3MoeConfig(
            **SMALL, moe_intermediate_size=8, num_experts=EXPERTS, num_experts_per_tok=2
        ),
        False,
    ),
    "gpt_oss": (GptOssConfig(**SMALL, num_local_experts=EXPERTS, num_experts_per_tok=2), True),
}


def _layer(model_type: str):
    config, _ = CONFIGS[model_type]
    torch.manual_seed(0)
    layer = AutoModelForCausalLM.from_config(config).model.layers[1]
    matrices = {m.module: m for m in layer_matrices(layer, ALL_WEIGHTS, "mlp.down_proj")}
    down = matrices["mlp.experts.down_proj"]
    with torch.no_grad():
        down.out_in()[EXPERT, ROW, COL] = SUPER_WEIGHT
    return layer, matrices


@pytest.mark.parametrize("model_type", CONFIGS)
def test_the_fused_expert_tensors_are_found_in_their_stored_orientation(model_type):
    layer, matrices = _layer(model_type)
    _, transposed = CONFIGS[model_type]
    for name in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
        assert matrices[name].experts and matrices[name].transposed is transposed
        assert matrices[name].count == EXPERTS
    down = matrices["mlp.experts.down_proj"].out_in()
    assert down.shape == (EXPERTS, SMALL["hidden_size"], down.shape[2])  # [experts, out, in] view
    assert "self_attn.q_proj" in matrices and not matrices["self_attn.q_proj"].experts
    only_down = [m.module for m in layer_matrices(layer, DOWN_PROJ_ONLY, "mlp.down_proj")]
    assert only_down == ["mlp.experts.down_proj"]


@pytest.mark.parametrize("model_type", CONFIGS)
def test_each_expert_is_quantized_on_its_own_and_the_super_weight_is_kept(model_type):
    _, matrices = _layer(model_type)
    down = matrices["mlp.experts.down_proj"]
    original = down.out_in().detach().clone()
    rule = ClipRule()
    variants = LayerVariants(
        list(matrices.values()), {("mlp.experts.down_proj", EXPERT): [(ROW, COL)]}, rule
    )

    variants.apply(Setting(BITS, BLOCK, Variant.CLIP_KEEP))
    kept = down.out_in().detach().clone()
    assert float(kept[EXPERT, ROW, COL]) == SUPER_WEIGHT
    for expert in range(EXPERTS):
        alone = quantize_rtn(original[expert], BITS, BLOCK, clip_threshold(original[expert], rule))
        if expert == EXPERT:
            alone[ROW, COL] = SUPER_WEIGHT
        assert torch.equal(kept[expert], alone)

    variants.apply(Setting(BITS, BLOCK, Variant.CLIP))
    clipped = float(down.out_in().detach()[EXPERT, ROW, COL])
    assert abs(clipped) <= clip_threshold(original[EXPERT], rule) + 1e-6 < SUPER_WEIGHT

    variants.restore()
    assert torch.equal(down.out_in(), original)


def test_a_kept_weight_names_its_expert():
    weight = KeptWeight(
        tensor="model.layers.1.mlp.experts.2.down_proj.weight",
        index=[ROW, COL],
        layer=1,
        module="mlp.experts.down_proj",
        row=ROW,
        col=COL,
        expert=EXPERT,
    )
    assert KeptWeight.model_validate(weight.as_json_dict()).expert == EXPERT
