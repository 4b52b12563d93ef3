"""Check before building: a checkpoint's config.json is bounded and agrees with its tensors
before anything is built from it.

transformers builds what a config asks for: `num_hidden_layers: 1000000000` makes it build
layers (or lists of per-layer settings) until the machine runs out of memory, `vocab_size:
10**10` asks for an embedding of that size, `num_attention_heads: 0` fails somewhere far away
with a misleading error. So, in order, before any transformers code sees the config:

1. `check_config`: the config is nested at most MAX_CONFIG_DEPTH deep and every size it gives
   (layers, widths, heads, vocabulary, context, experts) is an integer within BOUNDS;
2. `check_against_tensors`: what it says agrees with the checkpoint's safetensors headers (read,
   not loaded): its layer count is no more than the layers the tensors hold, its hidden size and
   vocabulary are sizes of stored tensors, and the parameter count it implies is within the
   worker's budget (limits.parameters) and not far above what the tensors hold;
3. `check_sites` (after the model is described on the meta device, which costs no memory): each
   down projection the science reads is stored as floating point, in the shape the config
   implies.

Each failure is a CheckpointRefused: one line, permanent (asking again gives the same answer).
"""

import math
import re
from collections.abc import Iterable

from workers.science import limits
from workers.science.errors import CheckpointRefused

MAX_CONFIG_DEPTH = 16
# Largest sizes a config may give (far above every real model: the largest have ~160 layers,
# a hidden size of ~25k, ~262k tokens of vocabulary, a context of 10M tokens, 384 experts).
MAX_LAYERS = 1024
MAX_WIDTH = 2**17
MAX_INNER_WIDTH = 2**20
MAX_VOCABULARY = 2**22
MAX_HEADS = 2**12
MAX_CONTEXT = 2**24
MAX_EXPERTS = 2**12

LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
INNER_KEYS = ("intermediate_size", "n_inner", "ffn_dim", "moe_intermediate_size")
HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads", "num_key_value_heads", "head_dim")
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")
BOUNDS: dict[str, int] = {
    **dict.fromkeys(LAYER_KEYS, MAX_LAYERS),
    **dict.fromkeys(HIDDEN_KEYS, MAX_WIDTH),
    **dict.fromkeys(INNER_KEYS, MAX_INNER_WIDTH),
    **dict.fromkeys(HEAD_KEYS, MAX_HEADS),
    **dict.fromkeys(EXPERT_KEYS, MAX_EXPERTS),
    **dict.fromkeys(CONTEXT_KEYS, MAX_CONTEXT),
    "vocab_size": MAX_VOCABULARY,
}
# The parameter count a config implies may exceed what its tensors hold (tied embeddings,
# approximations below) by this factor plus this many parameters, and no more.
IMPLIED_PARAMETERS_SLACK = 4
IMPLIED_PARAMETERS_MARGIN = 10**7
# What a built parameter costs in memory: float32, the dtype analysis computes in on a CPU.
BYTES_PER_PARAMETER = 4
# Stored dtypes a down projection may have: floating point (safetensors' names).
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
# Where a decoder layer's index shows in a tensor name: `model.layers.3.`, GPT-2's `h.3.`, ...
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")


def _depth(value, limit: int) -> int:
    """How deep `value` nests (iteratively: a hostile config cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _dicts(config: dict) -> Iterable[dict]:
    """The config and every sub-config in it (text_config, vision_config, ...)."""
    stack = [config]
    while stack:
        item = stack.pop()
        yield item
        stack.extend(v for v in item.values() if isinstance(v, dict))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(config: dict, what: str) -> None:
    """Step 1: nesting and the bounds of every size the config gives."""
    if _depth(config, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
        raise CheckpointRefused(
            f"{what}: config.json is nested more than {MAX_CONFIG_DEPTH} levels deep"
        )
    for part in _dicts(config):
        for key, bound in BOUNDS.items():
            value = part.get(key)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            if not all(_is_int(v) and 1 <= v <= bound for v in values) or not values:
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
                raise CheckpointRefused(
                    f"{what}: config.json gives {key} = {shown}; it must be an integer from 1 "
                    f"to {bound:,}"
                )


def text_part(config: dict) -> dict:
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def _first(config: dict, keys: tuple[str, ...]) -> tuple[str, int] | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return key, value
        if isinstance(value, list) and value and all(_is_int(v) for v in value):
            return key, max(int(v) for v in value)
    return None


def implied_parameters(config: dict) -> int:
    """A rough count of the parameters `config` asks transformers to build (attention as four
    hidden x hidden matrices, a feed-forward of three hidden x inner matrices, embeddings and
    head): enough to tell a real config from one that asks for far more than it ships."""
    text = text_part(config)
    layers = (_first(text, LAYER_KEYS) or ("", 1))[1]
    hidden = (_first(text, HIDDEN_KEYS) or ("", 1))[1]
    inner = (_first(text, INNER_KEYS) or ("", 4 * hidden))[1]
    vocabulary = (_first(text, ("vocab_size",)) or ("", 1))[1]
    return layers * (4 * hidden * hidden + 3 * hidden * inner) + 2 * vocabulary * hidden


def check_against_tensors(config: dict, shapes: dict[str, list[int]], what: str) -> None:
    """Step 2: the config against the tensor headers, and the parameter budget."""
    text = text_part(config)
    names = list(shapes)
    if text is not config and any("language_model" in n for n in names):
        names = [n for n in names if "language_model" in n]  # the text model's own layers
    indices = [int(m.group(1)) for n in names if (m := LAYER_INDEX.search(n))]
    layers = _first(text, LAYER_KEYS)
    if layers is not None and indices and layers[1] > max(indices) + 1:
        raise CheckpointRefused(
            f"{what}: config.json gives {layers[0]} = {layers[1]:,} but the checkpoint's "
            f"tensors hold {max(indices) + 1:,} layers"
        )
    sizes = {size for shape in shapes.values() for size in shape}
    for keys in (HIDDEN_KEYS, ("vocab_size",)):
        given = _first(text, keys)
        if given is not None and given[1] not in sizes:
            raise CheckpointRefused(
                f"{what}: config.json gives {given[0]} = {given[1]:,} but no tensor of the "
                "checkpoint has that size"
            )
    implied = implied_parameters(config)
    budget = limits.current().parameters
    if implied > budget:
        raise CheckpointRefused(
            f"{what}: config.json describes about {implied:,} parameters "
            f"({implied * BYTES_PER_PARAMETER / 1e9:.3g} GB as float32), over the worker's "
            f"budget of {budget:,}"
        )
    stored = sum(math.prod(shape) for shape in shapes.values())
    if implied > IMPLIED_PARAMETERS_SLACK * stored + IMPLIED_PARAMETERS_MARGIN:
        raise CheckpointRefused(
            f"{what}: config.json describes about {implied:,} parameters but the checkpoint's "
            f"tensors hold {stored:,}"
        )


def check_sites(
    feed_forward, dtypes: dict[str, str], shapes: dict[str, list[int]], what: str
) -> None:
    """Step 3: every stored down projection the descriptor names is floating point and has
    the hidden size and the inner width among its dimensions."""
    tail = re.escape(feed_forward.layers.rsplit(".", 1)[-1])
    for layer, sites in enumerate(feed_forward.sites):
        for site in sites:
            # The site's stored tensor(s): per-expert sites hold one per expert (`module.E.`).
            stored = re.compile(
                rf"(?:^|\.){tail}\.{layer}\.{re.escape(site.module)}\.(?:\d+\.)?"
                rf"{re.escape(site.parameter)}$"
            )
            for name in (n for n in dtypes if stored.search(n)):
                if dtypes[name] not in FLOAT_DTYPES:
                    raise CheckpointRefused(
                        f"{what}: {name} is stored as {dtypes[name]}; a down projection must be "
                        "floating point (integer and boolean weights hold no super weight swreg "
                        "can ablate)"
                    )
                shape = shapes[name]
                implied = {feed_forward.d_model, site.inner}
                if site.dense and (len(shape) != 2 or implied - set(shape)):
                    raise CheckpointRefused(
                        f"{what}: {name} has shape {shape}, not the "
                        f"{feed_forward.d_model} x {site.inner} config.json implies"
                    )
