"""Tiny Hugging Face checkpoints with planted super weights, for tests and benchmarks.

``build_planted_model(model_type, out_dir)`` writes config.json + model.safetensors + a tokenizer
for one of ``SUPPORTED_MODEL_TYPES``. The weights come from the model's own initialisation
(``AutoModelForCausalLM.from_config``, seeded); then a *genuine* super activation is planted:

1. **A massive residual dimension** ``driver_dim``: the embedding column is a large constant, so
   every token carries it (as real LLMs carry massive activations). MLP channels read it only
   weakly (ordinary activations, max |X| ~ 3) except the planted channels, which read it
   strongly and so produce a huge down-projection input ``X[:, col]`` (~``PLANT_ACTIVATION``) on
   every token. No MLP reads a spiking row.
2. **The super weight** ``W_down[row, col] = value`` (an ordinary size, 3-6) turns that into a
   spike ``Y[:, row]`` thousands of times larger than any other layer's down-projection output.
3. **Why it matters**: the final norm and LM head are calibrated so the next-token distribution
   depends on the spike: with every planted weight in place the model predicts an English byte
   unigram distribution (perplexity ~20 on English); with any one planted weight zeroed it
   predicts the reverse ranking (perplexity explodes). The decision boundary sits halfway
   between "all plants" and "the weakest plant zeroed", so each plant is individually critical
   even when several share one row. Models that normalise the MLP output before the residual
   add (OLMo2, Gemma2, Gemma3: ``post_feedforward_layernorm``) saturate the spike, so there the
   row also gets many small negative "counter" contributions: the spike changes sign when any
   plant is removed. That post-norm's weight at ``row`` is raised so the spike stays dominant in
   the residual, as it is in pre-norm models.
4. **A dead decoy** ``dead``: in the same down-projection matrix, a weight larger in magnitude
   than every other (plants included) whose input channel is exactly 0 on every token (its
   input rows and bias are zero, and act(0) = 0 for SiLU/GELU/ReLU). Ranking by magnitude picks
   it; zeroing it changes nothing.

LM heads are untied (``tie_word_embeddings=False``) in every tiny model: the calibration writes
LM-head columns that must not also feed the input, and a tied massive embedding column would
put a huge constant into every logit (which Gemma2's logit soft-capping would flatten).

All tiny models share a byte-level tokenizer (``build_byte_tokenizer``): token id ``b`` is byte
``b`` (0..255), then ``<pad>`` 256, ``<bos>`` 257, ``<eos>`` 258, ``<unk>`` 259. Encoding
prepends ``<bos>``
(a template post-processor), so ``tokenizer("Hi")["input_ids"] == [257, 72, 105]``.

``build_synthetic_llama`` writes a large (e.g. 7B-shaped) Llama checkpoint tensor by tensor with
the same construction worked out analytically, never holding more than one shard in memory.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

# --- the shared byte tokenizer -------------------------------------------------------------------

BYTE_VOCAB = 256
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 256, 257, 258, 259
TOKENIZER_SIZE = 260
# Byte-level BPE never produces <unk>; it exists because some tokenizer classes that
# AutoTokenizer forces by model type (Qwen2Tokenizer for qwen2) add a default unk token
# outside the model's vocabulary when the tokenizer names none.
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
MAX_POSITIONS = 2048  # tests and benchmarks run 1,024-token windows; leave headroom


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what the ByteLevel pre-tokenizer emits)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(BYTE_VOCAB):
        if b not in printable:
            printable.append(b)
            chars.append(BYTE_VOCAB + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def build_byte_tokenizer():
    """A 260-token byte-level BPE (no merges) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in _bytes_to_unicode().items()}
    vocab.update({PAD_TOKEN: PAD_ID, BOS_TOKEN: BOS_ID, EOS_TOKEN: EOS_ID, UNK_TOKEN: UNK_ID})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, BOS_ID)],
    )
    tok.add_special_tokens([PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN, model_max_length=MAX_POSITIONS,
    )


# --- what the planted model predicts ---------------------------------------------------------------

# English bytes from most to least frequent (letter-frequency tables, space first). The intact
# model predicts a Zipf distribution over this ranking; a broken one predicts the reverse.
ENGLISH_BYTES_BY_FREQUENCY = (
    " etaoinshrdlcumwfgypbvk,.\nTIASWHMBCx'j\"-qz0DPNERFLGOY12K:;()?!JU5VQ3X4Z896/7"
)
ZIPF_EXPONENT = 1.0
# Floor for bytes and specials outside the ranking: rare but possible, so perplexity stays finite.
UNRANKED_LOGIT = -10.0


def unigram_logits(vocab_size: int) -> torch.Tensor:
    """Target next-token logits of an intact planted model (log-probabilities, max 0)."""
    logits = torch.full((vocab_size,), UNRANKED_LOGIT)
    for rank, char in enumerate(ENGLISH_BYTES_BY_FREQUENCY):
        logits[ord(char)] = max(-ZIPF_EXPONENT * math.log(rank + 1), UNRANKED_LOGIT)
    return logits


# --- planted coordinates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plant:
    """One weight of a down projection: ``layer``, ``row`` (output/residual channel), ``col``
    (input channel), ``value``. Coordinates are in nn.Linear orientation whatever the storage."""

    layer: int
    row: int
    col: int
    value: float


@dataclass
class PlantedModel:
    path: Path
    model_type: str
    plants: list[Plant]
    dead: Plant | None
    down_proj_tensor: Callable[[int], str]  # checkpoint tensor name of layer l's down projection
    config: dict = field(default_factory=dict)  # the saved config.json
    conv1d: bool = False  # down projection stored [in, out] (GPT-2 Conv1D)
    driver_dim: int = -1  # the massive residual dimension feeding the planted channels

    def stored_index(self, plant: Plant) -> tuple[int, int]:
        """Index of ``plant`` in the tensor as stored ([row, col]; [col, row] for Conv1D)."""
        return (plant.col, plant.row) if self.conv1d else (plant.row, plant.col)

    def down_proj_module(self, layer: int) -> str:
        """Module name of layer ``layer``'s down projection in the loaded model."""
        return self.down_proj_tensor(layer).removesuffix(".weight")


# --- architectures ----------------------------------------------------------------------------------

TINY_HIDDEN = 64
TINY_HEADS = 4
TINY_KV_HEADS = 2
TINY_HEAD_DIM = TINY_HIDDEN // TINY_HEADS
TINY_FFN = 256  # room for 2 plants + a dead channel + post-norm counter channels


@dataclass(frozen=True)
class _Arch:
    config: Callable[[int], dict]  # num_layers -> model-specific config kwargs
    layers: str  # module path of the layer list
    mlp_in: tuple[str, ...]  # input projection(s) under a layer; for "gated": (gate, up)
    style: str  # "gated" (gate, up), "fused" (one [gate; up] matrix) or "plain" (fc + act)
    down: str  # the down projection under a layer
    conv1d: bool = False  # GPT-2: Conv1D weights stored [in, out]
    post_mlp_norm: str | None = None  # norm applied to the MLP output before the residual add
    norm_plus_one: bool = False  # Gemma norms scale by (1 + weight)


def _decoder_kwargs(num_layers: int, **extra) -> dict:
    return dict(
        hidden_size=TINY_HIDDEN, intermediate_size=TINY_FFN, num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_KV_HEADS, num_hidden_layers=num_layers,
        max_position_embeddings=MAX_POSITIONS, **extra,
    )


_LLAMA_LIKE = dict(layers="model.layers", mlp_in=("mlp.gate_proj", "mlp.up_proj"),
                   style="gated", down="mlp.down_proj")
_GEMMA_POST = dict(post_mlp_norm="post_feedforward_layernorm", norm_plus_one=True)

_ARCHS: dict[str, _Arch] = {
    "llama": _Arch(config=_decoder_kwargs, **_LLAMA_LIKE),
    "mistral": _Arch(config=_decoder_kwargs, **_LLAMA_LIKE),
    "qwen2": _Arch(config=_decoder_kwargs, **_LLAMA_LIKE),
    "qwen3": _Arch(config=lambda n: _decoder_kwargs(n, head_dim=TINY_HEAD_DIM), **_LLAMA_LIKE),
    "gemma": _Arch(config=lambda n: _decoder_kwargs(n, head_dim=TINY_HEAD_DIM),
                   norm_plus_one=True, **_LLAMA_LIKE),
    "gemma2": _Arch(config=lambda n: _decoder_kwargs(n, head_dim=TINY_HEAD_DIM),
                    **_GEMMA_POST, **_LLAMA_LIKE),
    "gemma3_text": _Arch(config=lambda n: _decoder_kwargs(n, head_dim=TINY_HEAD_DIM),
                         **_GEMMA_POST, **_LLAMA_LIKE),
    "olmo": _Arch(config=_decoder_kwargs, **_LLAMA_LIKE),
    "olmo2": _Arch(config=_decoder_kwargs, post_mlp_norm="post_feedforward_layernorm",
                   **_LLAMA_LIKE),
    "phi3": _Arch(
        config=lambda n: _decoder_kwargs(n, original_max_position_embeddings=MAX_POSITIONS),
        layers="model.layers", mlp_in=("mlp.gate_up_proj",), style="fused", down="mlp.down_proj",
    ),
    "gpt_neox": _Arch(
        config=lambda n: dict(hidden_size=TINY_HIDDEN, intermediate_size=TINY_FFN,
                              num_attention_heads=TINY_HEADS, num_hidden_layers=n,
                              max_position_embeddings=MAX_POSITIONS),
        layers="gpt_neox.layers", mlp_in=("mlp.dense_h_to_4h",), style="plain",
        down="mlp.dense_4h_to_h",
    ),
    "gpt2": _Arch(
        config=lambda n: dict(n_embd=TINY_HIDDEN, n_inner=TINY_FFN, n_head=TINY_HEADS,
                              n_layer=n, n_positions=MAX_POSITIONS),
        layers="transformer.h", mlp_in=("mlp.c_fc",), style="plain", down="mlp.c_proj",
        conv1d=True,
    ),
    "falcon": _Arch(
        # Falcon-7B style: rotary (no ALiBi), old decoder architecture, parallel attention.
        config=lambda n: dict(hidden_size=TINY_HIDDEN, ffn_hidden_size=TINY_FFN,
                              num_attention_heads=TINY_HEADS, num_hidden_layers=n,
                              new_decoder_architecture=False, alibi=False, parallel_attn=True,
                              max_position_embeddings=MAX_POSITIONS),
        layers="transformer.h", mlp_in=("mlp.dense_h_to_4h",), style="plain",
        down="mlp.dense_4h_to_h",
    ),
    "opt": _Arch(
        config=lambda n: dict(hidden_size=TINY_HIDDEN, ffn_dim=TINY_FFN,
                              num_attention_heads=TINY_HEADS, num_hidden_layers=n,
                              word_embed_proj_dim=TINY_HIDDEN, do_layer_norm_before=True,
                              max_position_embeddings=MAX_POSITIONS),
        layers="model.decoder.layers", mlp_in=("fc1",), style="plain", down="fc2",
    ),
}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_ARCHS)

# --- construction constants -----------------------------------------------------------------------

# Residual value of the massive dimension. It must dominate everything else in the residual
# (including the spike, ~3e3) so every norm's output stays pointed along it: the planted channels
# then see the same input in any layer, and the final norm stays near-linear in the spike. 2e4 is
# still far inside the float16/bfloat16 range.
DRIVER_RESIDUAL = 2.0e4
PLANT_ACTIVATION = 400.0  # X[:, col] of a planted channel: "hundreds to thousands"
GATE_PREACTIVATION = 8.0  # where SiLU/GELU are already ~linear (silu(8) = 7.997)
DEFAULT_PLANT_LAYER = 1  # super weights sit early in real models (layer 1-2 of 32)
DEFAULT_PLANT_VALUES = (4.5, 4.0)  # ordinary weight sizes; similar contributions
DEAD_MAGNITUDE_RATIO = 1.3  # the decoy is clearly the largest weight of its matrix
# Post-norm models: the spike's share of the residual (norm weight at `row` ~ this / sqrt(hidden)).
POST_NORM_SPIKE_RESIDUAL = 1000.0
# Every other channel reads the massive dim weakly (pre-activation ~N(0, 1)), so ordinary layers
# show ordinary activity (max |X| ~ 3, max |Y| ~ 1) instead of none.
BACKGROUND_PREACTIVATION = 1.0
COUNTER_CHANNELS = 48  # many small contributions: no single one matters
COUNTER_ACTIVATION = 50.0
CALIBRATION_TEXT = (
    "The quick brown fox jumps over the lazy dog, and then it rests in the shade of an old tree "
    "while the farmer walks back to the house."
)


def _config_for(model_type: str, num_layers: int):
    from transformers import AutoConfig

    kwargs = _ARCHS[model_type].config(num_layers)
    return AutoConfig.for_model(
        model_type, vocab_size=TOKENIZER_SIZE, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        pad_token_id=PAD_ID, tie_word_embeddings=False, **kwargs,
    )


# --- small tensor helpers -------------------------------------------------------------------------


def _submodule(model: nn.Module, arch: _Arch, layer: int, name: str) -> nn.Module:
    return model.get_submodule(f"{arch.layers}.{layer}.{name}")


def _out_in(weight: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """A [out, in] view of a projection weight (Conv1D stores [in, out])."""
    return weight.T if conv1d else weight


def _input_matrices(model: nn.Module, arch: _Arch, layer: int) -> list[torch.Tensor]:
    return [_out_in(_submodule(model, arch, layer, n).weight, arch.conv1d) for n in arch.mlp_in]


def _down_matrix(model: nn.Module, arch: _Arch, layer: int) -> torch.Tensor:
    return _out_in(_submodule(model, arch, layer, arch.down).weight, arch.conv1d)


def _capture(model: nn.Module, module: nn.Module, ids: torch.Tensor, *, output: bool) -> torch.Tensor:
    """Run the model once and return ``module``'s input (or output) as [tokens, features]."""
    seen: list[torch.Tensor] = []

    def hook(_mod, args, result=None):
        seen.append((result if output else args[0]).detach())

    handle = (module.register_forward_hook(hook) if output
              else module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        handle.remove()
    return seen[0].reshape(-1, seen[0].shape[-1])


@dataclass
class _Build:
    """A model being planted, with what the construction needs to measure it."""

    model: nn.Module
    arch: _Arch
    ids: torch.Tensor
    driver_dim: int

    def mlp_input(self, layer: int) -> torch.Tensor:
        return _capture(self.model, _submodule(self.model, self.arch, layer, self.arch.mlp_in[0]),
                        self.ids, output=False)

    def down_input(self, layer: int) -> torch.Tensor:
        return _capture(self.model, _submodule(self.model, self.arch, layer, self.arch.down),
                        self.ids, output=False)

    def final_hidden(self) -> torch.Tensor:
        return _capture(self.model, self.model.get_output_embeddings(), self.ids, output=False)


# --- planting steps -------------------------------------------------------------------------------


def _hide_dims_from_mlps(b: _Build, dims: set[int]) -> None:
    """Zero the input-projection columns of the massive dims (the driver and the spiking rows)
    in every layer, so no MLP sees a huge input; the background and the planted channels then
    read the driver dim on purpose, weakly and strongly."""
    for layer in range(b.model.config.num_hidden_layers):
        for matrix in _input_matrices(b.model, b.arch, layer):
            matrix[:, sorted(dims)] = 0.0


def _driver_input(b: _Build, layer: int) -> float:
    """The massive dimension's mean value at ``layer``'s MLP input (after any pre-norm)."""
    return b.mlp_input(layer)[:, b.driver_dim].mean().item()


def _add_background(b: _Build, generator: torch.Generator) -> None:
    """Give every MLP channel a small constant input from the massive dim (layer by layer: each
    layer's input depends on the layers before it)."""
    for layer in range(b.model.config.num_hidden_layers):
        u = _driver_input(b, layer)
        for matrix in _input_matrices(b.model, b.arch, layer):
            noise = torch.randn(matrix.shape[0], generator=generator)
            matrix[:, b.driver_dim] = noise * BACKGROUND_PREACTIVATION / u


def _set_driver(b: _Build, layer: int, col: int, activation: float, u: float) -> None:
    """Make intermediate channel ``col`` of ``layer`` equal ~``activation`` on every token by
    reading only the massive dimension, whose value at the MLP input is ``u``."""
    d_ff = _down_matrix(b.model, b.arch, layer).shape[1]
    matrices = _input_matrices(b.model, b.arch, layer)
    if b.arch.style == "plain":
        rows = [(matrices[0], col, activation / u)]  # act(a * u) ~ a * u for a large positive
    else:
        gate, up = (matrices[0], matrices[0]) if b.arch.style == "fused" else matrices
        up_col = col + d_ff if b.arch.style == "fused" else col
        # act(gate) * up = act(G) * activation / G ~ activation.
        rows = [(gate, col, GATE_PREACTIVATION / u),
                (up, up_col, activation / (GATE_PREACTIVATION * u))]
    for matrix, r, weight in rows:
        matrix[r, :] = 0.0
        matrix[r, b.driver_dim] = weight
    _zero_input_bias(b, layer, col)


def _zero_input_bias(b: _Build, layer: int, col: int) -> None:
    for name in b.arch.mlp_in:
        bias = _submodule(b.model, b.arch, layer, name).bias
        if bias is not None:
            bias[col] = 0.0


def _kill_channel(b: _Build, layer: int, col: int) -> None:
    """Make channel ``col`` exactly 0: zero input rows and bias, and act(0) = 0."""
    d_ff = _down_matrix(b.model, b.arch, layer).shape[1]
    for matrix in _input_matrices(b.model, b.arch, layer):
        matrix[col, :] = 0.0
        if b.arch.style == "fused":
            matrix[col + d_ff, :] = 0.0
    _zero_input_bias(b, layer, col)


def _set_norm_gain(norm: nn.Module, dim: int, gain: float, plus_one: bool) -> None:
    norm.weight[dim] = gain - 1.0 if plus_one else gain


def _plant_counters(b: _Build, group: list[Plant], free_cols: list[int]) -> None:
    """Post-norm models: counter the row with many small negative contributions so that the
    spike keeps its sign only while every plant of the group is present."""
    layer, row = group[0].layer, group[0].row
    down = _down_matrix(b.model, b.arch, layer)
    x = b.down_input(layer).mean(dim=0)
    contributions = [p.value * x[p.col].item() for p in group]
    sign = math.copysign(1.0, sum(contributions))
    magnitudes = [abs(c) for c in contributions]
    # All present: +min/2; weakest removed: -min/2; any other removed: more negative.
    counter = sum(magnitudes) - min(magnitudes) / 2
    u = _driver_input(b, layer)
    for col in free_cols:
        _set_driver(b, layer, col, COUNTER_ACTIVATION, u)
    x = b.down_input(layer).mean(dim=0)
    total_x = sum(x[c].item() for c in free_cols)
    for col in free_cols:
        down[row, col] = -sign * counter / total_x
    norm = _submodule(b.model, b.arch, layer, b.arch.post_mlp_norm)
    gain = POST_NORM_SPIKE_RESIDUAL / math.sqrt(down.shape[0])
    _set_norm_gain(norm, row, gain, b.arch.norm_plus_one)


def _calibrate_head(b: _Build, plants: list[Plant]) -> None:
    """Write LM-head columns so the logits are the unigram logits L with every plant in place
    and -L or lower when any one plant is zeroed.

    Each spiking row r contributes a_r(h) = L/n at its full value h_full, falling linearly to
    -L(2n-1)/n at h_weak (its weakest plant zeroed), so the n rows sum to L intact and to -L with
    one row broken. The constant parts ride on the massive dim, ~constant after the final norm.
    """
    lm = b.model.get_output_embeddings().weight
    target = unigram_logits(lm.shape[0])
    rows = sorted({p.row for p in plants})
    lm[:, rows + [b.driver_dim]] = 0.0
    baseline = b.final_hidden().mean(dim=0)
    constant = torch.zeros_like(target)
    for row in rows:
        h_full = baseline[row].item()
        h_weak = _weakest_ablation(b, [p for p in plants if p.row == row], row)
        slope = 2 * target / (h_full - h_weak)
        lm[:, row] = slope
        constant += target / len(rows) - slope * h_full
    lm[:, b.driver_dim] = constant / baseline[b.driver_dim].item()


def _weakest_ablation(b: _Build, group: list[Plant], row: int) -> float:
    """Mean final-norm output at ``row`` with the plant whose removal changes it least zeroed."""
    h_full = b.final_hidden()[:, row].mean().item()
    ablated = []
    for p in group:
        down = _down_matrix(b.model, b.arch, p.layer)
        down[p.row, p.col] = 0.0
        ablated.append(b.final_hidden()[:, row].mean().item())
        down[p.row, p.col] = p.value
    return min(ablated, key=lambda h: abs(h - h_full))


def _verify_each_plant_flips(b: _Build, plants: list[Plant]) -> None:
    """Each plant, zeroed alone, must move the output past the calibrated boundary."""
    lm = b.model.get_output_embeddings()
    target = unigram_logits(lm.weight.shape[0])
    for p in plants:
        down = _down_matrix(b.model, b.arch, p.layer)
        down[p.row, p.col] = 0.0
        logits = lm(b.final_hidden()).mean(dim=0)
        down[p.row, p.col] = p.value
        agreement = torch.dot(logits - logits.mean(), target - target.mean()).item()
        if agreement > 0:
            raise RuntimeError(f"zeroing {p} does not break the model: the layout is unsupported")


# --- layout ---------------------------------------------------------------------------------------


def _default_layout(num_layers: int, hidden: int, d_ff: int, seed: int) -> tuple[list[Plant], Plant]:
    rng = random.Random(seed)
    layer = min(DEFAULT_PLANT_LAYER, num_layers - 1)
    row, dead_row = rng.sample(range(hidden), 2)
    c1, c2, dead_col = rng.sample(range(d_ff), 3)
    plants = [Plant(layer, row, c, v) for c, v in zip((c1, c2), DEFAULT_PLANT_VALUES)]
    return plants, Plant(layer, dead_row, dead_col, 0.0)  # value set once the matrix is known


def _validate(plants: list[Plant], dead: Plant | None, num_layers: int, hidden: int, d_ff: int):
    for p in plants + ([dead] if dead else []):
        if not (0 <= p.layer < num_layers and 0 <= p.row < hidden and 0 <= p.col < d_ff):
            raise ValueError(f"{p} is outside {num_layers} layers x [{hidden}, {d_ff}]")
    if any(p.value == 0 for p in plants):
        raise ValueError("a planted weight must be non-zero")
    for key in {(p.layer, p.row) for p in plants}:
        signs = {math.copysign(1, p.value) for p in plants if (p.layer, p.row) == key}
        if len(signs) > 1:
            raise ValueError(f"plants sharing layer/row {key} must share a sign")
    if dead and any((p.layer, p.col) == (dead.layer, dead.col) for p in plants):
        raise ValueError("the dead weight's input channel must not feed a plant")


def build_planted_model(
    model_type: str,
    out_dir: Path,
    *,
    plants: list[Plant] | None = None,
    dead: Plant | None = None,
    num_layers: int = 4,
    seed: int = 0,
    add_dead: bool = True,
) -> PlantedModel:
    """Write a tiny ``model_type`` checkpoint with planted super weights into ``out_dir``.

    ``plants=None``: two super weights in one row of layer 1 (seeded row/cols). ``dead=None`` and
    ``add_dead``: a decoy in the first plant's matrix, 1.3x larger than any other weight, whose
    input channel is dead. A given ``dead`` keeps its value (0 means "choose the decoy value").
    """
    from transformers import AutoModelForCausalLM

    if model_type not in _ARCHS:
        raise ValueError(f"unsupported model_type {model_type!r}; one of {SUPPORTED_MODEL_TYPES}")
    arch = _ARCHS[model_type]
    tokenizer = build_byte_tokenizer()
    config = _config_for(model_type, num_layers)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()

    hidden, d_ff = TINY_HIDDEN, TINY_FFN
    if plants is None:
        plants, default_dead = _default_layout(num_layers, hidden, d_ff, seed)
        dead = dead or (default_dead if add_dead else None)
    elif dead is None and add_dead:
        dead = _pick_dead(plants, hidden, d_ff, seed)
    _validate(plants, dead, num_layers, hidden, d_ff)

    rng = random.Random(seed + 1)
    taken_dims = {p.row for p in plants} | ({dead.row} if dead else set())
    driver_dim = rng.choice([d for d in range(hidden) if d not in taken_dims])
    ids = tokenizer(CALIBRATION_TEXT, return_tensors="pt")["input_ids"]
    b = _Build(model=model, arch=arch, ids=ids, driver_dim=driver_dim)

    with torch.no_grad():
        embedding = model.get_input_embeddings()
        scale = float(getattr(embedding, "embed_scale", 1.0))  # Gemma scales by sqrt(hidden)
        embedding.weight[:, driver_dim] = DRIVER_RESIDUAL / scale
        _hide_dims_from_mlps(b, {driver_dim} | {p.row for p in plants})
        _add_background(b, torch.Generator().manual_seed(seed))

        for layer in sorted({p.layer for p in plants}):  # earlier layers first: later ones see them
            u = _driver_input(b, layer)
            for col in sorted({p.col for p in plants if p.layer == layer}):
                _set_driver(b, layer, col, PLANT_ACTIVATION, u)
            for p in (p for p in plants if p.layer == layer):
                _down_matrix(model, arch, layer)[p.row, p.col] = p.value
            if arch.post_mlp_norm:
                _plant_all_counters(b, [p for p in plants if p.layer == layer], dead, rng)
        if dead is not None:
            dead = _plant_dead(b, dead)
        _calibrate_head(b, plants)
        _verify_each_plant_flips(b, plants)

    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)  # transformers 5 always writes safetensors
    tokenizer.save_pretrained(out_dir)
    return PlantedModel(
        path=out_dir, model_type=model_type, plants=list(plants), dead=dead,
        down_proj_tensor=_tensor_namer(arch), conv1d=arch.conv1d, driver_dim=driver_dim,
        config=json.loads((out_dir / "config.json").read_text()),
    )


def _tensor_namer(arch: _Arch) -> Callable[[int], str]:
    template = f"{arch.layers}.{{layer}}.{arch.down}.weight"
    return lambda layer: template.format(layer=layer)


def _pick_dead(plants: list[Plant], hidden: int, d_ff: int, seed: int) -> Plant:
    rng = random.Random(seed + 2)
    first = plants[0]
    used_cols = {p.col for p in plants if p.layer == first.layer}
    row = rng.choice([r for r in range(hidden) if r not in {p.row for p in plants}])
    col = rng.choice([c for c in range(d_ff) if c not in used_cols])
    return Plant(first.layer, row, col, 0.0)


def _plant_all_counters(b: _Build, layer_plants: list[Plant], dead: Plant | None,
                        rng: random.Random) -> None:
    layer = layer_plants[0].layer
    d_ff = _down_matrix(b.model, b.arch, layer).shape[1]
    reserved = {p.col for p in layer_plants} | ({dead.col} if dead and dead.layer == layer else set())
    free = [c for c in range(d_ff) if c not in reserved]
    rng.shuffle(free)
    for row in sorted({p.row for p in layer_plants}):
        if len(free) < COUNTER_CHANNELS:
            raise ValueError(f"layer {layer} has no room for counter channels")
        cols, free = free[:COUNTER_CHANNELS], free[COUNTER_CHANNELS:]
        _plant_counters(b, [p for p in layer_plants if p.row == row], cols)


def _plant_dead(b: _Build, dead: Plant) -> Plant:
    _kill_channel(b, dead.layer, dead.col)
    down = _down_matrix(b.model, b.arch, dead.layer)
    value = dead.value
    if value == 0.0:
        others = down.detach().clone()
        others[dead.row, dead.col] = 0.0
        # Negative, so a signed ranking would not find it either; 2 decimals to read well.
        value = -math.ceil(DEAD_MAGNITUDE_RATIO * others.abs().max().item() * 100) / 100
    down[dead.row, dead.col] = value
    return Plant(dead.layer, dead.row, dead.col, value)


# --- a large Llama, written tensor by tensor -------------------------------------------------------

LARGE_INIT_STD = 0.02  # Llama's initializer_range
SHARD_NAME = "model-{index:05d}-of-{total:05d}.safetensors"


def _llama_tensor_shapes(hidden: int, ffn: int, layers: int, heads: int, kv_heads: int,
                         vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    head_dim = hidden // heads
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for layer in range(layers):
        p = f"model.layers.{layer}"
        shapes += [
            (f"{p}.input_layernorm.weight", (hidden,)),
            (f"{p}.self_attn.q_proj.weight", (heads * head_dim, hidden)),
            (f"{p}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden)),
            (f"{p}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden)),
            (f"{p}.self_attn.o_proj.weight", (hidden, heads * head_dim)),
            (f"{p}.post_attention_layernorm.weight", (hidden,)),
            (f"{p}.mlp.gate_proj.weight", (ffn, hidden)),
            (f"{p}.mlp.up_proj.weight", (ffn, hidden)),
            (f"{p}.mlp.down_proj.weight", (hidden, ffn)),
        ]
    shapes += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return shapes


def _plan_shards(shapes: list[tuple[str, tuple[int, ...]]], itemsize: int,
                 shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Greedy split into shards of at most shard_bytes (a larger tensor gets its own shard)."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = math.prod(shape) * itemsize
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


@dataclass(frozen=True)
class _LargePlan:
    """The analytic version of the tiny construction for a pre-norm Llama with RMSNorm weight 1."""

    hidden: int
    plant: Plant
    driver_dim: int

    @property
    def u(self) -> float:
        # RMSNorm output of a residual dominated by one dim of any size: sqrt(hidden) there.
        return math.sqrt(self.hidden)

    @property
    def spike(self) -> float:
        silu = GATE_PREACTIVATION / (1 + math.exp(-GATE_PREACTIVATION))
        return self.plant.value * silu * PLANT_ACTIVATION / GATE_PREACTIVATION

    def final_row(self, spike: float) -> float:
        return self.u * spike / math.hypot(DRIVER_RESIDUAL, spike)

    def final_driver(self) -> float:
        return self.u * DRIVER_RESIDUAL / math.hypot(DRIVER_RESIDUAL, self.spike)


def _large_tensor(name: str, shape: tuple[int, ...], plan: _LargePlan, vocab_used: int,
                  dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """One tensor of the large Llama, drawn directly in ``dtype`` (no float32 copy), planted
    where the construction says."""
    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=dtype)
    t = torch.empty(shape, dtype=dtype).normal_(0.0, LARGE_INIT_STD, generator=generator)
    p, d0 = plan.plant, plan.driver_dim
    if name == "model.embed_tokens.weight":
        t[:, d0] = DRIVER_RESIDUAL
    elif name.endswith(("mlp.gate_proj.weight", "mlp.up_proj.weight")):
        # Ordinary channels read the massive dim weakly; none reads the spiking row.
        t[:, d0] = (torch.randn(shape[0], generator=generator)
                    * BACKGROUND_PREACTIVATION / plan.u).to(dtype)
        t[:, p.row] = 0.0
        if name == f"model.layers.{p.layer}.mlp.gate_proj.weight":
            t[p.col, :] = 0.0
            t[p.col, d0] = GATE_PREACTIVATION / plan.u
        elif name == f"model.layers.{p.layer}.mlp.up_proj.weight":
            t[p.col, :] = 0.0
            t[p.col, d0] = PLANT_ACTIVATION / (GATE_PREACTIVATION * plan.u)
    elif name == f"model.layers.{p.layer}.mlp.down_proj.weight":
        t[p.row, p.col] = p.value
    elif name == "lm_head.weight":
        _large_head(t, plan, vocab_used)
    return t


def _large_head(lm: torch.Tensor, plan: _LargePlan, vocab_used: int) -> None:
    target = torch.full((lm.shape[0],), UNRANKED_LOGIT)
    target[:vocab_used] = unigram_logits(vocab_used)
    h_full = plan.final_row(plan.spike)
    h_boundary = (h_full + plan.final_row(0.0)) / 2
    scale = target / (h_full - h_boundary)
    lm[:, plan.plant.row] = scale.to(lm.dtype)
    lm[:, plan.driver_dim] = (-scale * h_boundary / plan.final_driver()).to(lm.dtype)


def _iter_shards(shards, plan: _LargePlan, dtype: torch.dtype, seed: int,
                 ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    index = 0
    for shard_no, shard in enumerate(shards, start=1):
        tensors = {}
        for name, shape in shard:
            generator = torch.Generator().manual_seed(seed * 100_003 + index)
            tensors[name] = _large_tensor(name, shape, plan, TOKENIZER_SIZE, dtype, generator)
            index += 1
        yield shard_no, tensors


def build_synthetic_llama(
    out_dir: Path,
    *,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    vocab_size: int,
    dtype: torch.dtype = torch.bfloat16,
    shard_bytes: int = 2 * 1024**3,
    plant: Plant,
    seed: int = 0,
) -> PlantedModel:
    """Write a large Llama checkpoint with one planted super weight, one shard at a time.

    7B shape: hidden 4096, d_ff 11008, 32 layers, 32 heads, vocab 32000 (13.5 GB in bf16).
    Peak memory is about one shard plus one tensor (2.6 GB with the defaults at 7B shape).
    """
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    if vocab_size < TOKENIZER_SIZE:
        raise ValueError(f"vocab_size must be >= the tokenizer's {TOKENIZER_SIZE} tokens")
    if not (0 <= plant.layer < num_layers and 0 <= plant.row < hidden_size
            and 0 <= plant.col < intermediate_size and plant.value != 0):
        raise ValueError(f"{plant} does not fit the model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    driver_dim = random.Random(seed).choice([d for d in range(hidden_size) if d != plant.row])
    plan = _LargePlan(hidden=hidden_size, plant=plant, driver_dim=driver_dim)

    shapes = _llama_tensor_shapes(hidden_size, intermediate_size, num_layers, num_heads,
                                  num_kv_heads, vocab_size)
    itemsize = torch.empty((), dtype=dtype).element_size()
    shards = _plan_shards(shapes, itemsize, shard_bytes)
    weight_map, total = {}, 0
    for shard_no, tensors in _iter_shards(shards, plan, dtype, seed):
        fname = SHARD_NAME.format(index=shard_no, total=len(shards))
        save_file(tensors, str(out_dir / fname), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = fname
            total += t.numel() * itemsize
        del tensors  # one shard in memory at a time
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    config = LlamaConfig(
        hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads, vocab_size=vocab_size,
        max_position_embeddings=MAX_POSITIONS, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        pad_token_id=PAD_ID, tie_word_embeddings=False, dtype=dtype,
    )
    config.save_pretrained(out_dir)
    build_byte_tokenizer().save_pretrained(out_dir)
    return PlantedModel(
        path=out_dir, model_type="llama", plants=[plant], dead=None,
        down_proj_tensor=lambda layer: f"model.layers.{layer}.mlp.down_proj.weight",
        config=json.loads((out_dir / "config.json").read_text()), driver_dim=driver_dim,
    )
