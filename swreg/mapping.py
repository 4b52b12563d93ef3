"""From coordinates to a loaded transformers model: which parameter of `model.state_dict()` holds
each super weight and where, and helpers to read, keep and restore those weights around your
own quantization (or pruning).

A coordinate names a scalar as the checkpoint stores it (`tensor`, `index`). A transformers model
loaded from that checkpoint holds it in the parameter transformers loads the tensor into: the
same name except where transformers renames keys (the same rename table swreg reads checkpoints
with), and the same layout, so `index` addresses it unchanged. `row` and `col` are always the
output and input channel: for `nn.Linear` weights (stored `[out, in]`) `index == [row, col]`,
for GPT-2's `Conv1D` (stored `[in, out]`) `index == [col, row]`.

A weight inside a routed expert (`expert` set) is found in the parameter transformers 5 holds all
of a layer's experts in (`swreg.experts`): a per-expert tensor's `[r, c]` is the fused
parameter's `[expert, r, c]`; a fused tensor's three indices address it as stored, `[expert, out,
in]` or (gpt-oss) `[expert, in, out]`.

    weights = locate(model, coordinates_for("HuggingFaceTB/SmolLM2-135M-Instruct", api=URL))
    with keeping(model, weights):   # the super weights come back exactly afterwards
        clip_and_quantize(model)    # your code
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from registry.superweights.schemas import SuperWeightOut
from swreg.experts import loaded_place
from workers.contract.errors import InvalidInput
from workers.science.feed_forward import describe
from workers.science.streaming import stored_names


@dataclass(frozen=True)
class ModelWeight:
    """A super weight as a loaded model addresses it."""

    parameter: str  # the key in model.state_dict(), the name in model.named_parameters()
    index: tuple[int, ...]  # its position in that parameter, as the model stores it
    row: int  # output channel (the [out, in] view)
    col: int  # input channel
    transposed: bool  # the parameter is stored [in, out] (Conv1D, gpt-oss experts): (…, col, row)
    tensor: str  # the checkpoint's name of the tensor (the coordinate's `tensor`)
    value: float | None  # the value recorded with the coordinate (None for published entries)
    expert: int | None = None  # the routed expert (the first index of a fused parameter)


@dataclass(frozen=True)
class Kept:
    """Super weights read from a model, to be put back with `restore`."""

    weights: tuple[ModelWeight, ...]
    values: tuple[torch.Tensor, ...]  # 0-d copies, in each parameter's own dtype


def _parameter_names(model: PreTrainedModel, tensors: list[str]) -> dict[str, str]:
    """Stored tensor name -> the model's parameter that holds it."""
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    by_stored: dict[str, str] = {}
    for param, stored in stored_names(model, tensors, "the coordinates").items():
        if param in parameters:
            by_stored.setdefault(stored, param)
    return by_stored


def _matches(parameter: torch.Tensor, index: tuple[int, ...], value: float) -> bool:
    """Whether the model holds `value` (as recorded from the checkpoint) at `index`, compared in
    the parameter's own dtype: a model loaded in lower precision than it was stored rounds
    the value the same way."""
    held = parameter.detach()[index].to("cpu")
    return bool(held == torch.tensor(value, dtype=torch.float64).to(held.dtype))


def locate(
    model: nn.Module,
    coordinates: Iterable[SuperWeightOut],
    *,
    check_values: bool = True,
) -> list[ModelWeight]:
    """Where each coordinate's weight is in `model` (a transformers causal LM).

    With `check_values`, a weight whose value the registry recorded must hold that value in the
    model: a model from another revision, or one already quantized, is refused rather than
    given coordinates that name the wrong scalars (locate before you quantize)."""
    coordinates = list(coordinates)
    if getattr(model, "config", None) is None:
        raise InvalidInput("not a transformers model (it has no config)")
    pretrained = cast(PreTrainedModel, model)  # a transformers model: it has a config
    dense = [c for c in coordinates if not _in_experts(c)]
    # where this model's feed-forward output projections are (dense coordinates only)
    feed_forward = describe(model) if dense else None
    by_stored = _parameter_names(pretrained, [c.tensor for c in dense]) if dense else {}
    found = []
    for coordinate in coordinates:
        if _in_experts(coordinate):
            in_experts, index, transposed = _expert_place(pretrained, coordinate)
            tensor = model.get_parameter(in_experts)
            found.append(_checked(coordinate, in_experts, tensor, index, transposed, check_values))
            continue
        assert feed_forward is not None  # described for the dense coordinates
        parameter = by_stored.get(coordinate.tensor)
        layer_ok = 0 <= coordinate.layer < feed_forward.num_layers
        site = feed_forward.matrix_site(coordinate.layer) if layer_ok else None
        expected = feed_forward.parameter(coordinate.layer, site) if site is not None else None
        if (
            parameter is None
            or site is None
            or parameter != expected
            or site.module != coordinate.module
        ):
            raise InvalidInput(
                f"{coordinate.tensor} {coordinate.index} is not a parameter of this "
                f"{feed_forward.model_type} model (expected "
                f"{expected or 'a feed-forward projection'}): "
                "are the coordinates for this model?"
            )
        owner = model.get_submodule(parameter.rpartition(".")[0])
        tensor = model.get_parameter(parameter)
        transposed = isinstance(owner, Conv1D)
        index = tuple(int(i) for i in coordinate.index)
        if index != (
            (coordinate.col, coordinate.row) if transposed else (coordinate.row, coordinate.col)
        ):
            raise InvalidInput(
                f"{coordinate.tensor}: index {list(index)} does not match row {coordinate.row}, "
                f"col {coordinate.col} for a {'Conv1D [in, out]' if transposed else '[out, in]'} "
                "weight"
            )
        found.append(_checked(coordinate, parameter, tensor, index, transposed, check_values))
    return found


def _checked(
    coordinate: SuperWeightOut,
    parameter: str,
    tensor: torch.Tensor,
    index: tuple[int, ...],
    transposed: bool,
    check_values: bool,
) -> ModelWeight:
    """The located weight, once its index is inside the parameter and (with `check_values`) the
    parameter holds the value the registry recorded."""
    if len(index) != tensor.dim() or any(
        not 0 <= i < n for i, n in zip(index, tensor.shape, strict=True)
    ):
        raise InvalidInput(
            f"{coordinate.tensor}: index {list(coordinate.index)} is outside {parameter} of shape "
            f"{list(tensor.shape)}"
        )
    if (
        check_values
        and coordinate.value is not None
        and tensor.device.type != "meta"
        and not _matches(tensor, index, coordinate.value)
    ):
        held = float(tensor.detach()[index])
        raise InvalidInput(
            f"{parameter}{list(index)} holds {held!r}, the registry recorded "
            f"{coordinate.value!r}: the model is not the revision these coordinates belong to, "
            "or it was already changed (locate before quantizing)"
        )
    return ModelWeight(
        parameter=parameter,
        index=index,
        row=coordinate.row,
        col=coordinate.col,
        transposed=transposed,
        tensor=coordinate.tensor,
        value=coordinate.value,
        expert=coordinate.expert,
    )


# A tensor of all experts is [experts, a, b]; a per-expert tensor [a, b] is stacked into one.
_EXPERTS_RANK = 3


def _in_experts(coordinate: SuperWeightOut) -> bool:
    return coordinate.expert is not None or len(coordinate.index) == _EXPERTS_RANK


def _hidden_size(model: PreTrainedModel) -> int | None:
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    return getattr(config, "hidden_size", None)


def _expert_place(
    model: PreTrainedModel, coordinate: SuperWeightOut
) -> tuple[str, tuple[int, ...], bool]:
    """(parameter, index in it, stored [.., in, out]) of a weight inside a routed expert."""
    place = loaded_place(model, coordinate.tensor)
    index = place.expert_prefix + tuple(int(i) for i in coordinate.index)
    shape = tuple(model.get_parameter(place.parameter).shape)
    if len(shape) != _EXPERTS_RANK or len(index) != _EXPERTS_RANK:
        raise InvalidInput(
            f"{coordinate.tensor} {coordinate.index}: {place.parameter} of shape {list(shape)} "
            "is not a tensor of experts"
        )
    if f".{coordinate.layer}." not in f".{place.parameter}":
        raise InvalidInput(
            f"{coordinate.tensor} {coordinate.index}: {place.parameter} is not in layer "
            f"{coordinate.layer}: are the coordinates for this model?"
        )
    if coordinate.expert is not None and index[0] != coordinate.expert:
        raise InvalidInput(
            f"{coordinate.tensor} {coordinate.index}: expert {index[0]} in {place.parameter}, "
            f"not expert {coordinate.expert}"
        )
    # transformers' experts modules say which order they hold ([E, in, out]: is_transposed);
    # otherwise the output channel runs along the hidden size.
    owner = model.get_submodule(place.parameter.rpartition(".")[0])
    hidden = _hidden_size(model)
    if hasattr(owner, "is_transposed"):
        transposed = bool(owner.is_transposed)
    elif hidden is not None and shape[1] != shape[2] and hidden in shape[1:]:
        transposed = shape[2] == hidden
    else:  # square experts: the index itself says which order it is in
        transposed = (
            index[1:] == (coordinate.col, coordinate.row) and coordinate.row != coordinate.col
        )
    expected = (coordinate.col, coordinate.row) if transposed else (coordinate.row, coordinate.col)
    if index[1:] != expected:
        order = "[expert, in, out]" if transposed else "[expert, out, in]"
        raise InvalidInput(
            f"{coordinate.tensor}: index {list(coordinate.index)} does not match row "
            f"{coordinate.row}, col {coordinate.col} in {place.parameter} {order}"
        )
    return place.parameter, index, transposed


def read(model: nn.Module, weights: Iterable[ModelWeight]) -> list[float]:
    """The current values of the weights in `model`."""
    return [float(model.get_parameter(w.parameter).detach()[w.index]) for w in weights]


def keep(model: nn.Module, weights: Iterable[ModelWeight]) -> Kept:
    """Copies of the weights' current values, to put back with `restore`."""
    weights = tuple(weights)
    values = tuple(model.get_parameter(w.parameter).detach()[w.index].clone() for w in weights)
    return Kept(weights, values)


def restore(model: nn.Module, kept: Kept) -> None:
    """Put kept values back, exactly, in the model's parameters of the same names (after, say,
    your quantization replaced every weight by its dequantized value)."""
    with torch.no_grad():
        for weight, value in zip(kept.weights, kept.values, strict=True):
            parameter = model.get_parameter(weight.parameter)
            parameter[weight.index] = value.to(parameter.device, parameter.dtype)


@contextmanager
def keeping(model: nn.Module, weights: Iterable[ModelWeight]) -> Iterator[Kept]:
    """Keep the weights while the block changes the model, and put them back when it ends (the
    paper's recipe around your quantizer: clip, quantize, restore)."""
    kept = keep(model, weights)
    try:
        yield kept
    finally:
        restore(model, kept)
