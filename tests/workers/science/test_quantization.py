"""Round-to-nearest quantization (pure functions), and the quantization check on planted models:
clipping destroys the planted super weights, keeping them in full precision brings the model
back."""

import math

import pytest
import torch

from workers.contract.quantization import KeptWeight
from workers.science.checkpoint import open_checkpoint
from workers.science.pipeline.quantize import (
    DOWN_PROJ_ONLY,
    QuantizeOptions,
    ToKeep,
    quantize_check,
)
from workers.science.quantization import (
    ClipRule,
    Setting,
    Variant,
    clip_threshold,
    qmax,
    quantize_rtn,
    quantized,
    settings_grid,
)


def _matrix(rows: int = 8, cols: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def test_integer_levels():
    assert (qmax(4), qmax(3), qmax(8)) == (7, 3, 127)
    with pytest.raises(ValueError):
        qmax(1)


@pytest.mark.parametrize("bits", [4, 3])
@pytest.mark.parametrize("block", [64, 7, None])
def test_every_block_lies_on_its_own_symmetric_grid(bits, block):
    weight = _matrix()
    result = quantize_rtn(weight, bits, block)
    assert result.shape == weight.shape and result.dtype == weight.dtype
    size = weight.shape[1] if block is None else block
    for start in range(0, weight.shape[1], size):
        original, got = weight[:, start : start + size], result[:, start : start + size]
        for row in range(weight.shape[0]):
            scale = original[row].abs().max() / qmax(bits)
            levels = got[row] / scale
            assert torch.allclose(levels, levels.round(), atol=1e-4)
            assert levels.abs().max() <= qmax(bits) + 1e-4
            # Round to nearest: no weight moves by more than half a step.
            assert (got[row] - original[row]).abs().max() <= scale / 2 + 1e-6
            # The block's largest weight is represented exactly (absmax).
            largest = original[row].abs().argmax()
            assert got[row][largest] == pytest.approx(float(original[row][largest]), rel=1e-6)


def test_a_block_longer_than_a_row_is_the_whole_row_and_zeros_stay_zero():
    weight = _matrix(cols=50)
    assert torch.equal(quantize_rtn(weight, 4, 1000), quantize_rtn(weight, 4, None))
    weight[2] = 0
    assert torch.equal(quantize_rtn(weight, 4, 16)[2], torch.zeros(50))


def test_fewer_bits_and_larger_blocks_lose_more():
    weight = _matrix(rows=64, cols=512)

    def error(bits, block):
        return float((quantize_rtn(weight, bits, block) - weight).square().mean())

    assert error(4, 64) < error(3, 64)
    assert error(4, 64) < error(4, None)


def test_clip_rules():
    weight = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, 30.0]])
    rms = math.sqrt((7 + 900) / 8)
    assert clip_threshold(weight, ClipRule()) == pytest.approx(10 * rms)
    assert clip_threshold(weight, ClipRule.at_rms_multiple(2)) == pytest.approx(2 * rms)
    # The 0.75 quantile of the 8 magnitudes is the 6th smallest: 1.
    assert clip_threshold(weight, ClipRule.at_quantile(0.75)) == 1.0
    assert clip_threshold(weight, ClipRule.at_quantile(1.0)) == 30.0
    for bad in (
        {"rms_multiple": None, "quantile": None},
        {"rms_multiple": 3.0, "quantile": 0.5},
        {"rms_multiple": -1.0, "quantile": None},
        {"rms_multiple": None, "quantile": 0.0},
    ):
        with pytest.raises(ValueError):
            ClipRule(**bad)


def test_variants_clip_and_keep():
    weight = _matrix(rows=4, cols=128)
    weight[1, 5] = 40.0  # an outlier of its matrix, far beyond 10 x RMS
    rule = ClipRule()
    threshold = clip_threshold(weight, rule)
    assert threshold < 40.0
    keep = [(1, 5)]
    absmax = quantized(weight, Setting(4, 64, Variant.ABSMAX), keep, threshold)
    clip = quantized(weight, Setting(4, 64, Variant.CLIP), keep, threshold)
    clip_keep = quantized(weight, Setting(4, 64, Variant.CLIP_KEEP), keep, threshold)
    assert float(absmax[1, 5]) == pytest.approx(40.0)  # absmax keeps a block's largest anyway
    assert float(clip[1, 5]) == pytest.approx(threshold, rel=1e-5)  # clipping loses it
    assert float(clip_keep[1, 5]) == 40.0  # clip_keep restores it exactly
    others = torch.ones_like(weight, dtype=torch.bool)
    others[1, 5] = False
    assert torch.equal(clip[others], clip_keep[others])
    # The outlier's block: clipping gives the other weights a finer grid than absmax.
    block = (slice(1, 2), slice(0, 64))
    assert (clip[block] - weight[block]).abs()[others[block]].max() < (
        (absmax[block] - weight[block]).abs()[others[block]].max()
    )
    assert torch.equal(weight[1, 5], torch.tensor(40.0))  # the input is not changed


def test_settings_grid():
    grid = settings_grid(bits=(4, 3), blocks=(64, None))
    assert len(grid) == 2 * 2 * 3
    assert grid[0].name == "int4/64/absmax" and grid[-1].name == "int3/row/clip_keep"


# --- the check on planted models ----------------------------------------------------------------

# Quantizing only the down projections: in the planted models the input projections that feed a
# planted channel are themselves outliers by construction (one weight reads the massive
# residual dimension), so clipping them removes the super activation upstream of the super
# weight, and no kept super weight can bring it back. On the real SmolLM2 every linear weight
# is quantized (tests/workers/commands/test_quantize_check.py).
PLANTED_OPTIONS = QuantizeOptions(
    eval_tokens=256, bits=(4,), blocks=(64, None), weights=DOWN_PROJ_ONLY
)


def _kept_plants(planted, model_type: str) -> list[KeptWeight]:
    """The planted super weights, as the check keeps them."""
    module = open_checkpoint(planted.path).feed_forward.dense_site(0).module
    return [
        KeptWeight(
            tensor=planted.down_proj_tensor(p.layer),
            index=list(planted.stored_index(p)),
            layer=p.layer,
            module=module,
            row=p.row,
            col=p.col,
            value=p.value,
        )
        for p in planted.plants
    ]


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_keeping_the_planted_super_weights_undoes_the_damage_of_clipping(
    planted_models, model_type
):
    planted = planted_models(model_type)
    keep = _kept_plants(planted, model_type)
    check = quantize_check(planted.path, ToKeep(keep, "given"), PLANTED_OPTIONS)
    assert check.kept == keep and check.kept_from == "given"
    assert check.matrices == planted.config.get("num_hidden_layers", planted.config.get("n_layer"))
    baseline = check.baseline.perplexity
    results = {(r.block, r.variant): r for r in check.results}
    assert len(results) == 2 * 3
    for block in (64, None):
        clip, kept = results[(block, "clip")], results[(block, "clip_keep")]
        # Measured (gpt2, 256 tokens): clip 1.05e12, clip_keep 23.2 against a baseline of 23.18
        # (earlier, at 1,024 tokens, llama and gpt2: clip 8.4e11 and 9.6e11, clip_keep 23.95 and
        # 23.96 against 23.95 and 23.97).
        assert clip.perplexity > 1000 * baseline
        assert kept.perplexity < 1.1 * baseline
        assert clip.mean_kl_from_baseline > 10 * kept.mean_kl_from_baseline
        # absmax keeps each block's largest weight, the super weights among them.
        assert results[(block, "absmax")].perplexity < 1.1 * baseline


def _full_model_perplexity(model_dir, setting: Setting, keep, options: QuantizeOptions) -> float:
    """The quantized model's perplexity computed the plain way: the whole model loaded with
    `from_pretrained`, every matrix the check quantizes replaced by `quantized(...)`, one forward
    pass per evaluation window."""
    from transformers import AutoModelForCausalLM

    from workers.science.pipeline.quantize import layer_matrices
    from workers.science.pipeline.steps import (
        AnalysisOptions,
        Clock,
        evaluation_windows,
        open_for_analysis,
    )

    analysis = AnalysisOptions(eval_tokens=options.eval_tokens)
    checkpoint, context, tokenizer = open_for_analysis(model_dir, analysis, Clock())
    _, windows = evaluation_windows(tokenizer, analysis, context)
    feed_forward = checkpoint.feed_forward
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, torch_dtype=torch.float32, attn_implementation=feed_forward.attention
    ).eval()
    layers = model.get_submodule(feed_forward.layers)
    for index, layer in enumerate(layers):
        site = feed_forward.dense_site(index)
        for matrix in layer_matrices(layer, options.weights, site.module if site else None):
            original = matrix.out_in().detach().clone()
            kept = [(w.row, w.col) for w in keep if w.layer == index and w.module == matrix.module]
            with torch.no_grad():
                matrix.out_in().copy_(
                    quantized(original, setting, kept, clip_threshold(original, options.clip_rule))
                )
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in windows:
            logits = model(ids).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return math.exp(total / count)


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_the_streamed_sweep_scores_what_the_whole_quantized_model_scores(
    planted_models, model_type
):
    """One streamed pass carrying every setting gives each setting the perplexity of the whole
    model quantized the same way (every linear weight, GPT-2's Conv1D included)."""
    planted = planted_models(model_type)
    keep = _kept_plants(planted, model_type)
    options = QuantizeOptions(eval_tokens=256, bits=(4,), blocks=(16,))
    check = quantize_check(planted.path, ToKeep(keep, "given"), options)
    for result in check.results:
        setting = Setting(result.bits, result.block, Variant(result.variant))
        expected = _full_model_perplexity(planted.path, setting, keep, options)
        assert result.perplexity == pytest.approx(expected, rel=1e-4), setting.name
    # The tiny models' random weights barely move the perplexity when quantized; the clipped
    # super weights do, so the clip setting is where a difference between the paths would show.
    clip = next(r for r in check.results if r.variant == Variant.CLIP)
    assert clip.perplexity > 10 * check.baseline.perplexity
