"""Where each decoder layer's feed-forward output projection is, found from the model's structure.

A super weight lives in the projection that maps a feed-forward block's inner width back to the
hidden size (the "down projection"). Rather than a table of names per architecture, the model is
built from its config on the meta device (no weights, no memory) and each decoder layer is read:

- the decoder layers are the `nn.ModuleList` under the base model whose length is the config's
  layer count;
- in a layer, a feed-forward block is a module whose direct projections are one output
  projection (hidden size out) and the input projection(s) that feed it: two of the output's
  input width (gated: gate and up), one of twice that width (gate and up fused in one matrix),
  or one of the same width (ungated). Attention, state-space and convolution mixers are never
  read as one, whatever their shapes (a fused query/key/value can be twice the output's width);
- a routed-experts module holds its experts in 3-D parameters ([experts, out, in] or
  [experts, in, out]; transformers' experts classes say which with `is_transposed`) or as a list
  of per-expert blocks; a feed-forward block beside routed experts in the same block is a
  shared expert;
- a layer with no feed-forward block (a Nemotron-H Mamba or attention layer) still runs, with
  nothing to detect.

The result, `FeedForward`, is the DESCRIPTOR the rest of the science works from: per layer, its
projection sites (`ProjectionSite`: kind, module path, parameter, index order). The old hand
table survives as `OVERRIDES`, for architectures whose structure is ambiguous; which way a model
was read is recorded (`found_by`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, cast

import torch
from torch import nn

from workers.science.errors import CheckpointRefused, UnsupportedArchitecture


class SiteKind(StrEnum):
    LINEAR = "linear"  # nn.Linear, weight [out, in]
    CONV1D = "conv1d"  # GPT-2's Conv1D, weight [in, out]
    ROUTED_EXPERTS = "routed_experts"  # every routed expert's down projection
    SHARED_EXPERT = "shared_expert"  # an always-on expert beside routed ones (an nn.Linear)


class Layout(StrEnum):
    """How a site's parameter is indexed, as stored in the model and the checkpoint."""

    OUT_IN = "linear"  # [out, in]
    IN_OUT = "conv1d"  # [in, out]
    EXPERTS_OUT_IN = "fused_experts_out_in"  # [experts, out, in]
    EXPERTS_IN_OUT = "fused_experts_in_out"  # [experts, in, out]
    PER_EXPERT = "per_expert"  # a list of expert blocks, each with its own [out, in] Linear


class InputForm(StrEnum):
    """How the output projection's input is formed from the hidden state."""

    GATED = "gated"  # act(gate(x)) * up(x), two matrices
    UNGATED = "ungated"  # act(fc(x)), one matrix
    FUSED_GATE_UP = "fused_gate_up"  # one [gate; up] matrix, split in halves
    INTERLEAVED = "interleaved"  # one matrix, gate and up rows alternating (experts)


@dataclass(frozen=True)
class ProjectionSite:
    """One feed-forward output projection of a decoder layer.

    `module` is its path inside the layer, `parameter` the parameter's name on that module (for
    PER_EXPERT sites, the name under each expert block: `module.{e}.{parameter}`). Dense sites
    (LINEAR, CONV1D, SHARED_EXPERT) are 2-D and address a weight by (row = output channel,
    col = input channel); routed-expert sites carry what B's mixture-of-experts code needs."""

    kind: SiteKind
    module: str
    parameter: str
    layout: Layout
    input_form: InputForm | None
    inner: int  # the feed-forward inner width (the projection's input width)
    num_experts: int | None = None
    # transformers' experts-class flags (None where the experts class does not set them)
    is_transposed: bool | None = None
    is_concatenated: bool | None = None
    has_gate: bool | None = None
    has_bias: bool | None = None
    # How the experts module is called (`workers.science.experts`): "routed" (hidden states, the
    # chosen experts and their weights), "dense" (every token through every expert, inputs
    # scaled by the router: Llama 4), or another convention, named by its arguments.
    call: str | None = None

    @property
    def dense(self) -> bool:
        return self.kind is not SiteKind.ROUTED_EXPERTS

    @property
    def path(self) -> str:
        """The parameter's path inside the layer (dense sites)."""
        return f"{self.module}.{self.parameter}"

    @property
    def transposed(self) -> bool:
        return self.layout is Layout.IN_OUT

    def stored_index(self, row: int, col: int) -> list[int]:
        """A dense site's (row, col) as its parameter stores it."""
        return [col, row] if self.transposed else [row, col]

    def out_in(self, weight: torch.Tensor) -> torch.Tensor:
        """A dense site's weight (as stored) viewed as [out (row), in (col)]."""
        return weight.t() if self.transposed else weight

    def weight_of(self, layer_module: nn.Module) -> torch.Tensor:
        return layer_module.get_submodule(self.module).get_parameter(self.parameter)


@dataclass(frozen=True)
class FeedForward:
    """The descriptor: where every decoder layer's feed-forward output projection is."""

    model_type: str
    layers: str  # attribute path of the decoder layers in the *ForCausalLM model
    sites: tuple[tuple[ProjectionSite, ...], ...]  # per layer; () where a layer has no FF block
    d_model: int
    attention: str = "sdpa"  # "sdpa" where the model class supports it, else "eager"
    found_by: Literal["structure", "override"] = "structure"
    mixers: tuple[str, ...] = ()  # class names of non-attention token mixers (hybrids)
    sliding_window: int | None = None  # recorded, never a context cap

    @property
    def num_layers(self) -> int:
        return len(self.sites)

    def dense_site(self, layer: int) -> ProjectionSite | None:
        """The layer's dense output projection (LINEAR or CONV1D), None where it has none."""
        return next(
            (s for s in self.sites[layer] if s.kind in (SiteKind.LINEAR, SiteKind.CONV1D)), None
        )

    def shared_site(self, layer: int) -> ProjectionSite | None:
        """The layer's shared expert (an always-on expert beside routed ones), None where none."""
        return next((s for s in self.sites[layer] if s.kind is SiteKind.SHARED_EXPERT), None)

    def matrix_site(self, layer: int) -> ProjectionSite | None:
        """The layer's one 2-D output projection that detection reads as a whole: its dense
        projection, or in an MoE layer its shared expert's. None where it has neither."""
        return self.dense_site(layer) or self.shared_site(layer)

    def routed_site(self, layer: int) -> ProjectionSite | None:
        return next((s for s in self.sites[layer] if s.kind is SiteKind.ROUTED_EXPERTS), None)

    @property
    def routed_layers(self) -> list[int]:
        return [i for i in range(self.num_layers) if self.routed_site(i) is not None]

    @property
    def feed_forward_layers(self) -> list[int]:
        return [i for i, sites in enumerate(self.sites) if sites]

    def parameter(self, layer: int, site: ProjectionSite) -> str:
        """The model's parameter name of a dense site in layer `layer`."""
        return f"{self.layers}.{layer}.{site.path}"

    def first_site(self) -> ProjectionSite:
        return next(s for sites in self.sites for s in sites)

    def first_parameter(self) -> str:
        """Some feed-forward output parameter (the report's dtype is read from it)."""
        for layer, sites in enumerate(self.sites):
            for site in sites:
                if site.layout is Layout.PER_EXPERT:
                    return f"{self.layers}.{layer}.{site.module}.0.{site.parameter}"
                return self.parameter(layer, site)
        raise LookupError("no feed-forward layer")


# ---- overrides -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """A hand-written answer for an architecture whose structure is ambiguous."""

    layers: str
    down_proj: str  # module path inside a layer
    layout: Layout = Layout.OUT_IN
    input_form: InputForm | None = None


# model_type -> override. Empty while structure reads every architecture in the coverage test;
# an entry wins over structure and is recorded as found_by="override".
OVERRIDES: dict[str, Override] = {}


# ---- the structure -----------------------------------------------------------------------------

# Token mixers a feed-forward block is never looked for in: attention and its relatives, and the
# recurrent / state-space / convolution mixers of hybrids. Matched on class names of the modules
# between a layer and a projection (a fused query/key/value projection can have exactly twice the
# width of the attention output, which would read as a fused gate/up by shape alone).
# Case-sensitive, on CamelCase words: "SeedOssMLP" holds "ssM" but no SSM.
_NON_ATTENTION_WORDS = (
    r"Mamba|SSM|Ssm|Mixer|ShortConv|ShortConvolution|Rwkv|RWKV|Retention|DeltaNet|MLSTM|[ms]LSTM"
    r"|RecurrentBlock|Rglru|RgLru|LinearAttention|xLSTMLayer"
)
MIXER_CLASS = re.compile(rf"Attention|Attn|{_NON_ATTENTION_WORDS}")
# ... of which these are not attention (recorded as the model's `mixers`).
NON_ATTENTION_MIXER = re.compile(_NON_ATTENTION_WORDS)
# A whole (hybrid) decoder layer or block is named after its mixer ("ZambaAttentionDecoderLayer"
# holds the feed-forward block too): such containers are not mixers themselves.
LAYER_CLASS = re.compile(r"(DecoderLayer|HybridLayer)$")


@dataclass(frozen=True)
class _Projection:
    path: str  # inside the layer
    kind: SiteKind  # LINEAR or CONV1D
    out: int
    inp: int


def _projection(path: str, module: nn.Module) -> _Projection | None:
    from transformers.pytorch_utils import Conv1D

    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    if isinstance(module, Conv1D):
        return _Projection(path, SiteKind.CONV1D, out=weight.shape[1], inp=weight.shape[0])
    if isinstance(module, nn.Linear) or hasattr(module, "in_features"):
        return _Projection(path, SiteKind.LINEAR, out=weight.shape[0], inp=weight.shape[1])
    return None


def _under_mixer(layer: nn.Module, path: str) -> bool:
    """Whether a module between the layer and `path` (excluded) is a token mixer."""
    parts = path.split(".")
    module = layer
    for part in parts[:-1]:
        module = module.get_submodule(part)  # a list's items are its submodules "0", "1", ...
        name = type(module).__name__
        if MIXER_CLASS.search(name) and not LAYER_CLASS.search(name):
            return True
    return False


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _input_form(inputs: list[_Projection], inner: int) -> InputForm | None:
    widths = sorted(p.out for p in inputs)
    if widths == [inner, inner]:
        return InputForm.GATED
    if widths == [inner]:
        return InputForm.UNGATED
    if widths == [2 * inner]:
        return InputForm.FUSED_GATE_UP
    return None


def _dense_blocks(layer: nn.Module, d_model: int) -> list[tuple[_Projection, InputForm]]:
    """Every (output projection, input form) of a feed-forward block in the layer: an output
    projection (hidden size out) and the input projections (hidden size in) beside it, in its
    parent module or below it (CPM-Ant keeps its gate and up in a sub-block)."""
    projections = [
        p
        for path, m in layer.named_modules()
        if path and (p := _projection(path, m)) is not None and not _under_mixer(layer, path)
    ]
    by_parent: dict[str, list[_Projection]] = {}
    for p in projections:
        by_parent.setdefault(_parent(p.path), []).append(p)
    found = []
    for parent, siblings in by_parent.items():
        below = [p for p in projections if parent == "" or p.path.startswith(parent + ".")]
        # Where several projections of a block map to the hidden size (inner width equal to the
        # hidden size), the output is the last registered: transformers' blocks register their
        # input projections first.
        for down in reversed([p for p in siblings if p.out == d_model]):
            # Its siblings that read the hidden size are all its inputs; only where it has none
            # are they looked for below, of the right width (CPM-Ant).
            inputs = [p for p in siblings if p is not down and p.inp == d_model] or [
                p
                for p in below
                if p not in siblings
                and parent
                and p.inp == d_model
                and p.out in (down.inp, 2 * down.inp)
            ]
            form = _input_form(inputs, down.inp)
            if form is None and down.inp == d_model:
                inputs = [p for p in inputs if p.out != d_model]
                form = _input_form(inputs, down.inp)
            if form is not None:
                found.append((down, form))
                break
    return found


_EXPERT_INDEX = re.compile(r"\.(\d+)\.")


def _cube_form(module: nn.Module) -> InputForm:
    has_gate = getattr(module, "has_gate", None)
    if has_gate is False:
        return InputForm.UNGATED
    if getattr(module, "is_concatenated", None) is False:
        return InputForm.INTERLEAVED
    return InputForm.FUSED_GATE_UP


def _experts_site(
    path: str, module: nn.Module, name: str, param, transposed: bool, form
) -> ProjectionSite:
    inner = param.shape[1] if transposed else param.shape[2]
    return ProjectionSite(
        kind=SiteKind.ROUTED_EXPERTS,
        module=path,
        parameter=name,
        layout=Layout.EXPERTS_IN_OUT if transposed else Layout.EXPERTS_OUT_IN,
        input_form=form,
        inner=int(inner),
        num_experts=int(param.shape[0]),
        is_transposed=getattr(module, "is_transposed", None),
        is_concatenated=getattr(module, "is_concatenated", None),
        has_gate=getattr(module, "has_gate", None),
        has_bias=getattr(module, "has_bias", None),
        call=_call_convention(module),
    )


# How an experts module is called (the routed site's `call`; workers.science.experts follows
# each): with the hidden states, the chosen experts and their weights; on every token with inputs
# the router already scaled (Llama 4); as parallel experts on rows grouped by expert (JetMoE).
ROUTED_CALL = "routed"
DENSE_CALL = "dense"
PARALLEL_CALL = "(inputs, expert_size)"
EXECUTABLE_CALLS = (ROUTED_CALL, DENSE_CALL, PARALLEL_CALL)
# Arguments of a routed call: hidden states, the chosen experts, their weights.
ROUTED_ARGUMENTS = 3


def eager_forward(module: nn.Module):
    """The module class's own eager forward (transformers' experts dispatcher wraps it)."""
    return getattr(type(module).forward, "__wrapped__", type(module).forward)


def _call_convention(module: nn.Module) -> str:
    import inspect

    names = list(inspect.signature(eager_forward(module)).parameters)[1:]
    if len(names) >= ROUTED_ARGUMENTS:
        return ROUTED_CALL
    if len(names) == 1:
        return DENSE_CALL
    return "(" + ", ".join(names) + ")"


def _experts_sites(layer: nn.Module, d_model: int) -> list[ProjectionSite]:
    """Routed experts held in 3-D parameters: transformers 5's fused experts (input and output
    cubes in one module) and parallel experts (one [experts, out, in] cube per module, JetMoE)."""
    sites = []
    singles: dict[str, list[tuple[str, nn.Module, torch.Tensor]]] = {}
    for path, module in layer.named_modules():
        if not path or _under_mixer(layer, path + ".x"):
            continue
        cubes = [(n, p) for n, p in module.named_parameters(recurse=False) if p.dim() == 3]
        if len(cubes) == 1:
            singles.setdefault(_parent(path), []).append((path, module, cubes[0][1]))
            continue
        if len(cubes) < 2:
            continue
        transposed = getattr(module, "is_transposed", None)
        if transposed is None:
            # No flags: parameters are registered input first, output last; the output one has
            # the hidden size on its output side, the input one on its input side.
            name, param = cubes[-1]
            _, first = cubes[0]
            transposed = (
                param.shape[2] == d_model
                and first.shape[1] == d_model
                and param.shape[1] != d_model
            )
        else:
            name, param = next(
                (
                    (n, p)
                    for n, p in reversed(cubes)
                    if (p.shape[2] if transposed else p.shape[1]) == d_model
                ),
                cubes[-1],
            )
        if (param.shape[2] if transposed else param.shape[1]) != d_model:
            continue
        sites.append(_experts_site(path, module, name, param, bool(transposed), _cube_form(module)))
    for members in singles.values():
        # Parallel experts: [experts, out, in] weights, the output one maps to the hidden size.
        outputs = [m for m in members if m[2].shape[1] == d_model and m[2].shape[2] != d_model]
        inputs = [m for m in members if m[2].shape[2] == d_model]
        if len(outputs) != 1 or len(inputs) != 1:
            continue
        path, module, param = outputs[0]
        width = inputs[0][2].shape[1]
        form = {param.shape[2]: InputForm.UNGATED, 2 * param.shape[2]: InputForm.FUSED_GATE_UP}.get(
            width
        )
        name = next(n for n, p in module.named_parameters(recurse=False) if p is param)
        sites.append(_experts_site(path, module, name, param, False, form))
    return sites


def layer_sites(layer: nn.Module, d_model: int) -> tuple[ProjectionSite, ...]:
    """The feed-forward output projection sites of one decoder layer, by structure."""
    routed = _experts_sites(layer, d_model)
    dense = _dense_blocks(layer, d_model)
    # Per-expert blocks (a list of expert MLPs): the same block path but for the expert index.
    groups: dict[str, list[tuple[_Projection, InputForm]]] = {}
    for down, form in dense:
        groups.setdefault(
            _EXPERT_INDEX.sub(".{e}.", "." + down.path + ".", count=1)[1:-1], []
        ).append((down, form))
    sites: list[ProjectionSite] = list(routed)
    plain: list[tuple[_Projection, InputForm]] = []
    for pattern, members in groups.items():
        if "{e}" in pattern and len(members) > 1:
            module, _, parameter = pattern.partition(".{e}.")
            down, form = members[0]
            sites.append(
                ProjectionSite(
                    kind=SiteKind.ROUTED_EXPERTS,
                    module=module,
                    parameter=f"{parameter}.weight",
                    layout=Layout.PER_EXPERT,
                    input_form=form,
                    inner=down.inp,
                    num_experts=len(members),
                )
            )
        else:
            plain.extend(members)
    moe_blocks = [_parent(s.module) for s in sites]
    shared = [
        (down, form)
        for down, form in plain
        if any(down.path.startswith(block + ".") or not block for block in moe_blocks)
    ]
    for down, form in shared:
        sites.append(
            ProjectionSite(
                SiteKind.SHARED_EXPERT, down.path, "weight", Layout.OUT_IN, form, down.inp
            )
        )
    rest = [pair for pair in plain if pair not in shared]
    if rest and not routed and not any(s.kind is SiteKind.ROUTED_EXPERTS for s in sites):
        # One dense feed-forward block per layer: a gated one before an ungated one, then the
        # widest (side branches such as Gemma 3n's low-rank LAuReL or Gemma 4's per-layer input
        # projection read like ungated blocks).
        down, form = max(rest, key=lambda pair: (pair[1] is not InputForm.UNGATED, pair[0].inp))
        kind = down.kind
        sites.insert(
            0,
            ProjectionSite(
                kind,
                down.path,
                "weight",
                Layout.IN_OUT if kind is SiteKind.CONV1D else Layout.OUT_IN,
                form,
                down.inp,
            ),
        )
    return tuple(sites)


def _decoder_path(model: nn.Module) -> str | None:
    """The path of the text decoder (a multimodal model's language model, not its vision
    tower), where the model names it."""
    get_decoder = getattr(model, "get_decoder", None)
    if get_decoder is None:
        return None
    try:
        decoder = get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if decoder is None or decoder is model:
        return None
    return next((path for path, module in model.named_modules() if module is decoder), None)


def decoder_layers(model: nn.Module, num_layers: int) -> str:
    """The path of the decoder layers: the ModuleList of `num_layers` layers under the base
    model (the shortest path, then the one holding the most parameters)."""
    candidates = [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == num_layers and path
    ]
    base: str = getattr(model, "base_model_prefix", "")
    decoder = _decoder_path(model)
    under_base = (
        [c for c in candidates if decoder and c[0].startswith(decoder + ".")]
        or [c for c in candidates if base and c[0].startswith(base + ".")]
        or candidates
    )
    if not under_base and base:
        # A config whose layer count is not the number of decoder layers (LongCat-Flash counts
        # two sub-layers per layer): the list of layers directly under the base model.
        under_base = [
            (path, module)
            for path, module in model.named_modules()
            if isinstance(module, nn.ModuleList)
            and path.count(".") == 1
            and path.startswith(base + ".")
            and path.endswith(".layers")
        ]
    if not under_base:
        raise UnsupportedArchitecture(
            f"no list of {num_layers} decoder layers in {type(model).__name__}"
        )

    def size(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    path, _ = min(under_base, key=lambda c: (c[0].count("."), -size(c[1])))
    return path


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def num_layers_of(config) -> int | None:
    text = text_config(config)
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def d_model_of(config) -> int | None:
    text = text_config(config)
    for key in ("hidden_size", "n_embd", "d_model", "dim"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def attention_implementation(model_class: type) -> str:
    """SDPA where the model class supports it, else eager (the streamed and the naive paths use
    the same kernel so they compute alike)."""
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"


def _mixers(model: nn.Module, layers: nn.ModuleList) -> tuple[str, ...]:
    names = set()
    for layer in layers:
        for module in layer.modules():
            name = type(module).__name__
            if NON_ATTENTION_MIXER.search(name) and not LAYER_CLASS.search(name):
                names.add(name)
    return tuple(sorted(names))


def _sliding_window(config) -> int | None:
    text = text_config(config)
    window = getattr(text, "sliding_window", None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None
    if getattr(text, "use_sliding_window", None) is False:
        return None
    layer_types = getattr(text, "layer_types", None)
    if isinstance(layer_types, list) and "sliding_attention" not in layer_types:
        return None
    return window


def refuse_not_decoder_only(config) -> None:
    """Refuse, in one line, a model that is not decoder-only."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedArchitecture(
            f"{model_type!r} is not decoder-only (an encoder-decoder model)"
        )
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise UnsupportedArchitecture(f"{model_type!r} is not decoder-only (an encoder model)")


def describe(model: nn.Module) -> FeedForward:
    """The descriptor of a causal LM (built on the meta device or loaded)."""
    config = model.config
    model_type = getattr(config, "model_type", None) or "unknown"
    refuse_not_decoder_only(config)
    num_layers = num_layers_of(config)
    d_model = d_model_of(config)
    if num_layers is None or d_model is None:
        raise CheckpointRefused(
            f"{model_type!r}: the config does not give the layer count and hidden size"
        )
    override = OVERRIDES.get(model_type)
    found_by: Literal["structure", "override"] = "structure"
    sites: list[tuple[ProjectionSite, ...]]
    if override is not None:
        layers_path = override.layers
        layers = cast(nn.ModuleList, model.get_submodule(layers_path))  # the override names a list
        kind = SiteKind.CONV1D if override.layout is Layout.IN_OUT else SiteKind.LINEAR
        sites = []
        for layer in layers:
            weight = layer.get_parameter(f"{override.down_proj}.weight")
            inner = weight.shape[0] if override.layout is Layout.IN_OUT else weight.shape[1]
            sites.append(
                (
                    ProjectionSite(
                        kind,
                        override.down_proj,
                        "weight",
                        override.layout,
                        override.input_form,
                        int(inner),
                    ),
                )
            )
        found_by = "override"
    else:
        layers_path = decoder_layers(model, num_layers)
        layers = cast(
            nn.ModuleList, model.get_submodule(layers_path)
        )  # decoder_layers finds a list
        sites = [layer_sites(layer, d_model) for layer in layers]
    if not any(sites):
        raise UnsupportedArchitecture(
            f"{model_type!r} has no feed-forward block (no projection from an inner width back to "
            f"the hidden size {d_model} in any decoder layer): nothing to look for super weights in"
        )
    return FeedForward(
        model_type=model_type,
        layers=layers_path,
        sites=tuple(tuple(s) for s in sites),
        d_model=d_model,
        attention=attention_implementation(type(model)),
        found_by=found_by,
        mixers=_mixers(model, layers),
        sliding_window=_sliding_window(config),
    )


def skeleton(config) -> nn.Module:
    """The causal LM of `config` with every parameter and buffer on the meta device."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    try:
        with torch.device("meta"), no_init_weights():
            return AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        NotImplementedError,
    ) as exc:
        raise UnsupportedArchitecture(
            f"{getattr(config, 'model_type', None)!r}: transformers builds no causal LM from this "
            f"config ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None


def discover(config) -> FeedForward:
    """The descriptor of the model a transformers config describes (built on the meta device)."""
    refuse_not_decoder_only(config)
    return describe(skeleton(config))


def check_executable(feed_forward: FeedForward) -> None:
    """Refuse, in one line, routed experts whose run-time form the experts code cannot follow:
    experts kept as a list of blocks, and experts modules called some other way than with the
    router's choice (`routed`) or on router-scaled inputs (`dense`)."""
    for layer in feed_forward.routed_layers:
        site = feed_forward.routed_site(layer)
        assert site is not None  # a routed layer has a routed site
        if site.layout is Layout.PER_EXPERT or site.call not in EXECUTABLE_CALLS:
            how = (
                "a list of expert blocks"
                if site.layout is Layout.PER_EXPERT
                else f"called as {site.call}"
            )
            raise UnsupportedArchitecture(
                f"{feed_forward.model_type!r}: routed experts {site.module} ({how}) in layer "
                f"{layer}: swreg follows fused experts called with the router's choice only"
            )


def feed_forward_info(feed_forward: FeedForward):
    """What the report records of how the projection was found."""
    from workers.contract.report import FeedForwardInfo

    site = feed_forward.first_site()
    dense = next(
        (
            feed_forward.dense_site(i)
            for i in range(feed_forward.num_layers)
            if feed_forward.dense_site(i)
        ),
        None,
    )
    routed = next((feed_forward.routed_site(i) for i in feed_forward.routed_layers), None)
    shared = next(
        (s for sites in feed_forward.sites for s in sites if s.kind is SiteKind.SHARED_EXPERT), None
    )
    main = dense or site
    return FeedForwardInfo(
        found_by=feed_forward.found_by,
        layers=feed_forward.layers,
        module=main.module,
        layout=(routed or main).layout.value,
        input_form=main.input_form.value if main.input_form else None,
        experts=routed.module if routed else None,
        num_experts=routed.num_experts if routed else None,
        shared_expert=shared.module if shared else None,
        dense_layers=[
            i for i in feed_forward.feed_forward_layers if feed_forward.routed_site(i) is None
        ]
        if routed
        else [],
        mixers=list(feed_forward.mixers),
        sliding_window=feed_forward.sliding_window,
    )
