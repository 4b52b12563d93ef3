"""Run a causal LM one decoder layer at a time, reading each layer's weights once.

The model is built by transformers on the meta device (parameters only: buffers such as rotary
frequencies are real), so its own code still computes embeddings, masks and position
embeddings, and its own decoder-layer classes do the work. What we change is *when* weights
exist: the non-layer parameters (embeddings, final norm, head) stay loaded; a decoder layer's
parameters are read from the safetensors files just before it runs and dropped right after,
while a background thread reads the next layer. Peak memory is therefore two layers plus the
embeddings plus activations, whatever the model's size.

To drive layers one by one without re-implementing each architecture's calling convention, we
run the model's forward once per input sequence with every decoder layer replaced by a recorder:
it captures the exact arguments the model passes to each layer (masks, position embeddings,
sliding-window choices) and returns its input untouched. Later, `run_layer` calls the real layer
with those arguments, and `logits` runs the forward again with the layers replaced by the final
hidden state, so the model's own final norm, head and logit soft-capping apply.
"""

import copy
import ctypes
import functools
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightConverter, WeightRenaming, apply_renamings
from transformers.initialization import no_init_weights

from workers.science.checkpoint import Checkpoint
from workers.science.errors import CheckpointRefused
from workers.science.feed_forward import Layout


class _CaptureDone(Exception):
    """Raised by the last layer's recorder: nothing after the layers is needed while capturing."""


@dataclass
class LayerCall:
    """What the model passes to one decoder layer for one sequence, minus the hidden states."""

    args: tuple
    kwargs: dict


@dataclass
class SequenceCapture:
    input_ids: torch.Tensor  # [B, T] on the device (B = 1, or several right-padded sequences)
    embeddings: torch.Tensor  # [B, T, d_model]: what the first layer receives
    calls: list[LayerCall]
    lengths: list[int] | None = None  # tokens of each sequence before its padding


def compute_dtype_for(device: torch.device, stored: torch.dtype) -> torch.dtype:
    """float32 on the CPU (half-precision matmuls there are slow and less exact); the
    checkpoint's own dtype on an accelerator."""
    return torch.float32 if device.type == "cpu" else stored


# safetensors dtype codes -> torch dtypes, for the tensors a checkpoint may hold.
TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class TensorReader:
    """Reads single tensors from safetensors files with positioned reads into fresh buffers.

    Written by hand because `safe_open` memory-maps the whole file: mapped pages count toward
    the process's resident memory and its address-space limit for as long as the mapping lives,
    which defeats a bounded-memory stream, and copying out of the mapping reads every byte on
    the thread that first touches it. `os.preadv` releases the GIL, so the prefetch thread
    really reads while the compute thread computes, and the bytes read are counted exactly.
    """

    def __init__(self, checkpoint: Checkpoint, pin_memory: bool):
        self.checkpoint = checkpoint
        self.pin_memory = pin_memory
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self.bytes_read = 0

    def _fd(self, file: str) -> int:
        with self._lock:
            if file not in self._fds:
                self._fds[file] = os.open(self.checkpoint.path / file, os.O_RDONLY)
            return self._fds[file]

    def _read_into(self, name: str, view: memoryview, offset: int) -> None:
        fd, done = self._fd(self.checkpoint.tensor_file[name]), 0
        while done < len(view):
            count = os.preadv(fd, [view[done:]], offset + done)
            if count == 0:
                raise OSError(
                    f"{self.checkpoint.tensor_file[name]}: file ended inside tensor {name}"
                )
            done += count
        self.bytes_read += done

    def read(self, name: str) -> torch.Tensor:
        start, end = self.checkpoint.tensor_span[name]
        buffer = torch.empty(end - start, dtype=torch.uint8, pin_memory=self.pin_memory)
        self._read_into(name, buffer.numpy().data, start)
        dtype = TORCH_DTYPES[self.checkpoint.tensor_dtype[name]]
        return buffer.view(dtype).reshape(self.checkpoint.tensor_shape[name])

    def read_rows(self, name: str, rows: list[int]) -> torch.Tensor:
        """Some rows of a 2-D tensor, [len(rows), columns], each read on its own."""
        start, _ = self.checkpoint.tensor_span[name]
        columns = self.checkpoint.tensor_shape[name][1]
        dtype = TORCH_DTYPES[self.checkpoint.tensor_dtype[name]]
        row_bytes = columns * torch.empty((), dtype=dtype).element_size()
        buffer = torch.empty(len(rows) * row_bytes, dtype=torch.uint8)
        view = buffer.numpy().data
        for i, row in enumerate(rows):
            self._read_into(
                name, view[i * row_bytes : (i + 1) * row_bytes], start + row * row_bytes
            )
        return buffer.view(dtype).reshape(len(rows), columns)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


# glibc's M_MMAP_THRESHOLD option, and the size from which allocations should be mmapped.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_frees_to_the_os() -> None:
    """Make glibc serve every allocation of 1 MiB or more with its own mapping, so that freeing a
    streamed layer gives its memory back to the system.

    By default glibc raises its mmap threshold each time a mapped block is freed, after which
    blocks of that size come from the heap arenas (one per thread: our prefetch thread has its
    own) and are kept there after they are freed: measured on a 12-layer, 268 MB-per-layer
    checkpoint, resident memory then grew by one MLP matrix per layer, as if layers were never
    released. A fixed threshold turns that off. Not glibc (macOS, musl): nothing to do.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def stored_dtype(checkpoint: Checkpoint) -> torch.dtype:
    """The dtype the checkpoint stores its feed-forward output projections in."""
    feed_forward = checkpoint.feed_forward
    # "model.layers.0.mlp.down_proj.weight" -> ".mlp.down_proj.weight" (checkpoints may drop the
    # base model's prefix, so only the part inside a layer is matched)
    suffix = (
        "."
        + feed_forward.first_parameter().removeprefix(feed_forward.layers + ".").split(".", 1)[1]
    )
    code = next((d for n, d in checkpoint.tensor_dtype.items() if n.endswith(suffix)), "F32")
    return TORCH_DTYPES.get(code, torch.float32)


def _tied_sources(model: PreTrainedModel) -> dict[str, str]:
    """Tied parameter name -> the parameter it shares its weight with (e.g. lm_head <- embed)."""
    # A composite (multimodal) config may say it at the top level or in its text part.
    configs = (model.config, model.config.get_text_config())
    if not any(getattr(c, "tie_word_embeddings", False) for c in configs):
        return {}
    tied: dict[str, str] = {}
    for prefix, module in model.named_modules():
        for target, source in (getattr(module, "_tied_weights_keys", None) or {}).items():
            tied[f"{prefix}.{target}" if prefix else target] = source
    return tied


@dataclass(frozen=True)
class Converted:
    """Model parameters transformers builds from stored tensors by more than a renaming (one of
    its `WeightConverter`s: experts stacked from one tensor per expert, gate and up concatenated,
    a fused query/key/value split, a transposed matrix). The conversion is transformers' own,
    run the way its loading runs it, on the stored tensors read by the streamer."""

    first: str  # the parameter transformers converts under (the first target)
    targets: tuple[str, ...]  # every parameter it produces
    converter: WeightConverter  # a template: each build uses a copy
    sources: tuple[tuple[str, str], ...]  # (stored name, its source pattern), in loading order

    @property
    def expert_names(self) -> tuple[str, ...]:
        """The stored per-expert tensors, by expert, of a parameter that only stacks them."""
        return tuple(name for name, _ in self.sources)

    @property
    def stacks_experts_only(self) -> bool:
        """Experts stacked along a new first dimension and nothing else: a stored [r, c] of
        expert e is the parameter's [e, r, c], so stored indices stay meaningful."""
        from transformers.core_model_loading import MergeModulelist

        operations = list(getattr(self.converter, "operations", None) or [])
        return (
            len(operations) == 1
            and isinstance(operations[0], MergeModulelist)
            and operations[0].dim == 0
            and len(self.converter.source_patterns) == 1
        )

    def build(
        self, model: PreTrainedModel, read: Callable[[str], torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        converter = copy.deepcopy(self.converter)
        for name, pattern in self.sources:
            # a callable: transformers' synchronous loading calls it (typed as a Future only)
            converter.add_tensor(self.first, name, pattern, functools.partial(read, name))  # type: ignore[arg-type]
        built = converter.convert(self.first, model=model, config=model.config)
        return {k: (v[0] if isinstance(v, list) else v) for k, v in built.items()}


@dataclass(frozen=True)
class StoredLayout:
    renamed: dict[str, str]  # model parameter -> the stored tensor holding it (renamed at most)
    converted: dict[str, Converted]  # model parameter -> the conversion that builds it

    @property
    def stacked(self) -> dict[str, Converted]:
        """Fused expert parameters built by stacking one stored tensor per expert."""
        return {p: c for p, c in self.converted.items() if c.first == p and c.stacks_experts_only}


def _targets(converter, first: str, state: dict) -> tuple[str, ...]:
    """The parameters a converter produces when it converts under `first` (one to many: each
    target pattern in place of the first)."""
    patterns = list(converter.target_patterns)
    if len(patterns) == 1:
        return (first,)
    found = [first.replace(patterns[0], t, 1) for t in patterns]
    return tuple(t for t in found if t in state) or (first,)


def stored_layout(model: PreTrainedModel, names: Iterable[str], what: str) -> StoredLayout:
    """Where every model parameter is stored, by transformers' own renaming and conversion table
    (`get_model_conversion_mapping`), applied the way transformers loads: checkpoint keys in its
    natural order, renamings first (GPT-NeoX's `embed_out` is the model's `lm_head`), then at most
    one converter; checkpoints that drop the base model's prefix (GPT-2's `h.0...`) are matched
    too. Converted parameters are built by the converters themselves (`Converted.build`). A
    feed-forward output projection must stay addressable by its stored index: stored as is, or
    stacked from one tensor per expert; any other conversion of it is refused (`what` names the
    checkpoint in the refusal)."""
    from transformers.core_model_loading import dot_natural_key, rename_source_key

    names = sorted(names, key=dot_natural_key)
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    by_pattern = {p: c for c in converters for p in c.source_patterns}
    state = model.state_dict()
    prefix = model.base_model_prefix
    renamed: dict[str, str] = {}
    groups: dict[str, tuple[WeightConverter, list[tuple[str, str]]]] = {}
    for stored in names:
        loaded, pattern = rename_source_key(stored, renamings, converters, prefix, state)
        if loaded not in state and stored in state:
            # A key the model holds under its stored name (transformers keeps it so too).
            renamed[stored] = stored
            continue
        if pattern is None:
            renamed[loaded] = stored
            # Every matching renaming fires, in order (they may chain), as transformers loads.
            plain = apply_renamings(stored, renamings)
            renamed.setdefault(plain, stored)
            if prefix:
                renamed.setdefault(f"{prefix}.{plain}", stored)
            continue
        groups.setdefault(loaded, (by_pattern[pattern], []))[1].append((stored, pattern))
    converted: dict[str, Converted] = {}
    for first, (converter, sources) in groups.items():
        conversion = Converted(first, _targets(converter, first, state), converter, tuple(sources))
        for target in conversion.targets:
            converted[target] = conversion
    return StoredLayout(renamed, converted)


def refuse_converted_projections(layout: StoredLayout, feed_forward, what: str) -> None:
    """A feed-forward output projection whose stored tensor transformers converts by more than
    stacking experts has no stored index swreg could name: refused in one line."""
    for layer, sites in enumerate(feed_forward.sites):
        for site in sites:
            if site.layout is Layout.PER_EXPERT:
                continue
            parameter = feed_forward.parameter(layer, site)
            conversion = layout.converted.get(parameter)
            if conversion is not None and not (
                conversion.stacks_experts_only and conversion.first == parameter
            ):
                raise CheckpointRefused(
                    f"{what}: tensor {conversion.sources[0][0]} must be converted, not just "
                    f"renamed, to load as {parameter}; a stored index cannot name its weights"
                )


def stored_names(model: PreTrainedModel, names: Iterable[str], what: str) -> dict[str, str]:
    """Model parameter name -> the stored tensor name (among `names`) that holds it as stored
    (renamed at most): see `stored_layout`."""
    return stored_layout(model, names, what).renamed


def _probe_output_arity(
    layer_forward: Callable, hidden: torch.Tensor, args: tuple, kwargs: dict
) -> int | None:
    """What a decoder layer returns, from one run of it on the meta device (its parameters are
    still there while capturing: nothing is computed): 0 for a tensor, n for a tuple (or list)
    of n. None where the layer cannot run on the meta device (a state-space kernel)."""
    from torch.utils._pytree import tree_map

    def to_meta(value):
        return value.to("meta") if isinstance(value, torch.Tensor) else value

    try:
        output = layer_forward(
            to_meta(hidden), *tree_map(to_meta, args), **tree_map(to_meta, kwargs)
        )
    except Exception:  # noqa: BLE001 - any failure only means "could not tell"
        return None
    return len(output) if isinstance(output, tuple | list) else 0


# When the probe cannot tell: a tensor, as most layers return; if the model's loop then fails on
# it, the capture is run again with a pair (hidden_states, None), which serves the loops that
# unpack two values (`hidden_states, attn_weights = layer(...)`) or take the first.
_GUESSED_ARITY = 0
_FALLBACK_ARITY = 2


def _set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    owner._parameters[leaf] = nn.Parameter(value, requires_grad=False)


class LayerStreamer:
    """`head=False` (detection only): the LM head is never loaded, and of the token embeddings
    only the rows of the sequences captured are read (`capture_all`), for as long as capturing
    takes: the embedding matrix is often the largest tensor of a small model."""

    def __init__(
        self, checkpoint: Checkpoint, device: str | torch.device = "cpu", head: bool = True
    ):
        return_large_frees_to_the_os()
        self.head_loaded = head
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.feed_forward = checkpoint.feed_forward
        # What a decoder layer returns (0: a tensor; n: a tuple of n, hidden states first): seen
        # on its real output (`run_layer`), or probed on the meta device while capturing; the
        # recorders hand back the same shape of output, so the model's own loop accepts it.
        self._arity: int | None = None
        self._arity_known = False
        self.dtype = compute_dtype_for(self.device, stored_dtype(checkpoint))
        try:
            config = AutoConfig.from_pretrained(checkpoint.path, trust_remote_code=False)
            # The parameters are on the meta device and read later: their random initialisation
            # (transformers', through torch.nn.init) would be wasted work.
            with init_empty_weights(include_buffers=False), no_init_weights():
                self.model = AutoModelForCausalLM.from_config(
                    config,
                    dtype=self.dtype,
                    attn_implementation=self.feed_forward.attention,
                    trust_remote_code=False,
                )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointRefused(
                f"{checkpoint.path}: config.json does not describe a valid "
                f"{self.feed_forward.model_type} model ({exc})"
            ) from None
        self.model.eval()
        self._buffers_to_device()
        self.layers: nn.ModuleList = self.model.get_submodule(self.feed_forward.layers)
        self.num_layers = len(self.layers)
        self._tied = _tied_sources(self.model)
        layout = stored_layout(self.model, checkpoint.tensor_file, str(checkpoint.path))
        refuse_converted_projections(layout, self.feed_forward, str(checkpoint.path))
        self.names = layout.renamed
        # Parameters transformers converts from stored tensors, and of them the fused expert
        # parameters stacked from one stored tensor per expert.
        self.converted = layout.converted
        self.stacked = layout.stacked
        self.reader = TensorReader(checkpoint, pin_memory=self.device.type == "cuda")
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swreg-prefetch")
        self._pending: dict[int, Future] = {}
        self._mode: str = "run"
        self._capture: list[LayerCall] = []
        self._inject: torch.Tensor | None = None
        self._install_dispatch()
        self._load_parameters(self._non_layer_parameters())

    # ---- weights -------------------------------------------------------------------------

    def _buffers_to_device(self) -> None:
        for module in self.model.modules():
            for key, buffer in list(module._buffers.items()):
                if buffer is not None and buffer.device != self.device:
                    module._buffers[key] = buffer.to(self.device)

    def _checkpoint_name(self, param: str) -> str | None:
        return self.names.get(param)

    def _parameter_of(self, module: nn.Module) -> str:
        return next(f"{n}.weight" for n, m in self.model.named_modules() if m is module)

    def _non_layer_parameters(self) -> list[str]:
        prefix = self.feed_forward.layers + "."
        skip = set()
        if not self.head_loaded:
            skip = {self._parameter_of(self.model.get_input_embeddings())}
            output = self.model.get_output_embeddings()
            if output is not None:
                skip.add(self._parameter_of(output))
        return [
            n
            for n, _ in self.model.named_parameters(remove_duplicate=False)
            if not n.startswith(prefix) and n not in skip
        ]

    def _layer_parameters(self, layer: int) -> list[str]:
        prefix = f"{self.feed_forward.layers}.{layer}."
        return [prefix + n for n, _ in self.layers[layer].named_parameters()]

    def _source_name(self, param: str) -> str | None:
        """Checkpoint tensor holding `param`: its own, or that of a parameter it is tied to
        (checkpoints store a tied pair once, under either name)."""
        name = self._checkpoint_name(param)
        if name is None and param in self._tied:
            name = self._checkpoint_name(self._tied[param])
        if name is None:
            partners = [target for target, source in self._tied.items() if source == param]
            name = next((n for n in map(self._checkpoint_name, partners) if n), None)
        return name

    def _read(self, params: list[str]) -> dict[str, torch.Tensor]:
        """Read parameters from the checkpoint into host memory (runs on the prefetch thread)."""
        by_name: dict[str, torch.Tensor] = {}
        tensors: dict[str, torch.Tensor] = {}
        built: dict[str, torch.Tensor] = {}
        for param in params:
            if param in self.converted:
                if param not in built:
                    built.update(self._read_converted(param))
                tensors[param] = self._checked(param, built.get(param))
                continue
            name = self._source_name(param)
            if name is None:
                raise CheckpointRefused(f"{self.checkpoint.path}: no tensor for parameter {param}")
            expected = list(self.model.get_parameter(param).shape)
            if self.checkpoint.tensor_shape[name] != expected:
                raise CheckpointRefused(
                    f"{self.checkpoint.path}: tensor {name} has shape "
                    f"{self.checkpoint.tensor_shape[name]}, the config implies {expected}"
                )
            if name not in by_name:
                by_name[name] = self._stage(self.reader.read(name))
            tensors[param] = by_name[name]
        return tensors

    def _read_converted(self, param: str) -> dict[str, torch.Tensor]:
        """The parameters one conversion builds (one or several), from its stored tensors."""
        conversion = self.converted[param]
        try:
            return conversion.build(self.model, lambda name: self._stage(self.reader.read(name)))
        except (ValueError, RuntimeError, KeyError, IndexError) as exc:
            raise CheckpointRefused(
                f"{self.checkpoint.path}: tensors {conversion.sources[0][0]}, ... do not convert "
                "to "
                f"{param} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from None

    def _checked(self, param: str, tensor: torch.Tensor | None) -> torch.Tensor:
        expected = list(self.model.get_parameter(param).shape)
        if tensor is None or list(tensor.shape) != expected:
            first = self.converted[param].sources[0][0]
            shape = None if tensor is None else list(tensor.shape)
            raise CheckpointRefused(
                f"{self.checkpoint.path}: the tensors converted into {param} ({first}, ...) make "
                f"shape {shape}, the config implies {expected}"
            )
        return tensor

    def _stage(self, tensor: torch.Tensor) -> torch.Tensor:
        """Host-side preparation on the prefetch thread: on the CPU, the cast to the compute
        dtype (a no-op for float32 checkpoints); on an accelerator the pinned buffer goes as is
        and is cast after the copy."""
        return tensor if self.device.type == "cuda" else tensor.to(self.dtype)

    def _install(self, tensors: dict[str, torch.Tensor]) -> None:
        on_device: dict[int, torch.Tensor] = {}  # tied parameters share one device tensor
        for param, tensor in tensors.items():
            if id(tensor) not in on_device:
                on_device[id(tensor)] = tensor.to(self.device, self.dtype, non_blocking=True)
            _set_parameter(self.model, param, on_device[id(tensor)])

    def _load_parameters(self, params: list[str]) -> None:
        self._install(self._read(params))

    def prefetch(self, layer: int) -> None:
        if 0 <= layer < self.num_layers and layer not in self._pending:
            self._pending[layer] = self._prefetcher.submit(
                self._read, self._layer_parameters(layer)
            )

    def load_layer(self, layer: int) -> nn.Module:
        self.prefetch(layer)
        self._install(self._pending.pop(layer).result())
        return self.layers[layer]

    def release_layer(self, layer: int) -> None:
        for param in self._layer_parameters(layer):
            current = self.model.get_parameter(param)
            _set_parameter(
                self.model, param, torch.empty(current.shape, dtype=current.dtype, device="meta")
            )

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    def close(self) -> None:
        self._prefetcher.shutdown(wait=True)
        self.reader.close()

    # ---- driving the model's own forward -------------------------------------------------

    def _install_dispatch(self) -> None:
        for index, layer in enumerate(self.layers):
            original = layer.forward

            def dispatch(*args, _index=index, _original=original, **kwargs):
                return self._dispatch(_index, _original, args, kwargs)

            layer.forward = dispatch

    def _dispatch(self, index: int, original: Callable, args: tuple, kwargs: dict):
        if self._mode == "run":
            return original(*args, **kwargs)
        hidden, rest = (args[0], args[1:]) if args else (kwargs.pop("hidden_states"), ())
        if self._mode == "capture":
            if self._arity is None:
                probed = _probe_output_arity(original, hidden, rest, kwargs)
                self._arity, self._arity_known = (
                    (probed, True) if probed is not None else (_GUESSED_ARITY, False)
                )
            self._capture.append(LayerCall(rest, kwargs))
            if index == self.num_layers - 1:
                raise _CaptureDone
        elif index == 0:
            # inject: the first layer hands back the final hidden state, the others pass it on.
            hidden = self._inject
        return (hidden, *[None] * (self._arity - 1)) if self._arity else hidden

    @staticmethod
    def padded(sequences: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences [1, T_i] as one right-padded batch [B, max T] and its attention mask."""
        longest = max(int(s.numel()) for s in sequences)
        ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for i, sequence in enumerate(sequences):
            ids[i, : sequence.numel()] = sequence.reshape(-1)
            mask[i, : sequence.numel()] = 1
        return ids, mask

    @torch.inference_mode()
    def capture_all(
        self, sequences: list[torch.Tensor], masks: list[torch.Tensor | None] | None = None
    ) -> list[SequenceCapture]:
        """Capture every sequence (each with its attention mask, if any); without the head, on
        the embedding rows they use only."""
        masks = masks or [None] * len(sequences)
        if self.head_loaded or not sequences:
            return [
                self.capture(ids, attention_mask=m) for ids, m in zip(sequences, masks, strict=True)
            ]
        embedding = self.model.get_input_embeddings()
        param = self._parameter_of(embedding)
        full = self.model.get_parameter(param)
        name = self._source_name(param)
        if name is None or self.checkpoint.tensor_shape[name] != list(full.shape):
            stored = self.checkpoint.tensor_shape.get(name) if name else None
            raise CheckpointRefused(
                f"{self.checkpoint.path}: tensor {name or param} has shape {stored}, the config "
                f"implies {list(full.shape)}"
            )
        used = torch.unique(torch.cat([ids.reshape(-1) for ids in sequences]))
        rows = self._stage(self.reader.read_rows(name, used.tolist()))
        _set_parameter(self.model, param, rows.to(self.device, self.dtype))
        # The padding index only matters for gradients, and would point outside the reduced rows.
        padding_idx, embedding.padding_idx = getattr(embedding, "padding_idx", None), None
        try:
            return [
                self.capture(
                    ids,
                    forward_ids=torch.searchsorted(used, ids.reshape(-1)).reshape(ids.shape),
                    attention_mask=m,
                )
                for ids, m in zip(sequences, masks, strict=True)
            ]
        finally:
            embedding.padding_idx = padding_idx
            _set_parameter(
                self.model, param, torch.empty(full.shape, dtype=self.dtype, device="meta")
            )

    @torch.inference_mode()
    def capture(
        self,
        input_ids: torch.Tensor,
        forward_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> SequenceCapture:
        """Run the model's forward on `input_ids` up to the first layer (`forward_ids`, the same
        positions renumbered into a reduced embedding, when given). With an attention mask (a
        right-padded batch), the mask the model builds from it is what every layer receives."""
        input_ids = input_ids.to(self.device)
        forward_ids = input_ids if forward_ids is None else forward_ids.to(self.device)
        extra = {} if attention_mask is None else {"attention_mask": attention_mask.to(self.device)}
        self._mode, self._capture = "capture", []
        embeddings: list[torch.Tensor] = []
        hook = self.layers[0].register_forward_pre_hook(
            lambda _m, args, kwargs: embeddings.append(
                args[0] if args else kwargs["hidden_states"]
            ),
            with_kwargs=True,
        )
        try:
            self._forward_to_last_layer(forward_ids, extra)
        finally:
            hook.remove()
            self._mode = "run"
        lengths = None if attention_mask is None else attention_mask.sum(dim=1).tolist()
        return SequenceCapture(input_ids, embeddings[0], self._capture, lengths)

    def _forward_to_last_layer(self, forward_ids: torch.Tensor, extra: dict) -> None:
        try:
            self.model(input_ids=forward_ids, use_cache=False, **extra)
        except _CaptureDone:
            return
        except (ValueError, TypeError, IndexError, RuntimeError):
            if self._arity_known:
                raise
            # The guessed output did not suit the model's loop: capture again with the other.
            self._arity, self._arity_known, self._capture = _FALLBACK_ARITY, True, []
            try:
                self.model(input_ids=forward_ids, use_cache=False, **extra)
            except _CaptureDone:
                return

    @torch.inference_mode()
    def run_layer(self, layer: int, hidden: torch.Tensor, capture: SequenceCapture) -> torch.Tensor:
        call = capture.calls[layer]
        output = self.layers[layer](hidden, *call.args, **call.kwargs)
        # A tuple or a list (GPT-1's blocks return [hidden_states, ...]).
        returns_tuple = isinstance(output, tuple | list)
        self._arity, self._arity_known = (len(output) if returns_tuple else 0), True
        return output[0] if returns_tuple else output

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @torch.inference_mode()
    def head(self, final_hidden: torch.Tensor) -> torch.Tensor:
        """Logits of final hidden states [B, n, d], through the model's own final norm, head and
        logit soft-capping: its forward runs on placeholder token ids of the same shape, with the
        decoder layers handing back `final_hidden`. Everything after the layers works position
        by position, so any slice of a sequence's positions gives that slice of its logits."""
        ids = torch.zeros(final_hidden.shape[:2], dtype=torch.long, device=self.device)
        self._mode, self._inject = "inject", final_hidden
        try:
            return self.model(input_ids=ids, use_cache=False).logits
        finally:
            self._mode, self._inject = "run", None
