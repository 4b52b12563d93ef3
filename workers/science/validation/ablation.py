"""How a variant changes its layer while one window runs through it: weights zeroed and put back
exactly, a super activation put back, the spiking output recorded before and after."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from workers.science.experts import down_parameters, stored_index
from workers.science.feed_forward import ProjectionSite
from workers.science.validation.variants import Coordinate, VariantPlan


@contextmanager
def _zeroed_at(weight: torch.Tensor, stored: list[list[int]]):
    """Zero the weights at these indices (as the parameter stores them) in place for the
    duration of the block, then put them back exactly."""
    if not stored:  # nothing to zero (an empty index would address the whole tensor)
        yield
        return
    index = tuple(torch.tensor(column) for column in zip(*stored, strict=True))
    with torch.no_grad():
        saved = weight[index].clone()
        weight[index] = 0
        try:
            yield
        finally:
            weight[index] = saved


def zeroed(weight: torch.Tensor, site: ProjectionSite, coordinates: list[Coordinate]):
    """Zero weights (row, col) of a dense projection site in place for the duration of the
    block, then put them back exactly."""
    return _zeroed_at(weight, [site.stored_index(r, c) for r, c in coordinates])


def zeroed_in_expert(
    module: nn.Module, site: ProjectionSite, expert: int, coordinates: list[tuple[int, int]]
):
    """Zero weights (row, col) of one expert's down projection in place, then put them back."""
    weight, _ = down_parameters(module, site)
    return _zeroed_at(weight, [stored_index(site, expert, r, c) for r, c in coordinates])


@contextmanager
def pruned(module: nn.Module, site: ProjectionSite, experts: list[int]):
    """Experts still routed to, their output zero: their down projection (and its bias) zeroed
    for the duration of the block, then put back exactly."""
    weight, bias = down_parameters(module, site)
    parameters = [p for p in (weight, bias) if p is not None]
    index = torch.tensor(experts, dtype=torch.long)
    with torch.no_grad():
        saved = [p[index].clone() for p in parameters]
        for p in parameters:
            p[index] = 0
        try:
            yield
        finally:
            for p, values in zip(parameters, saved, strict=True):
                p[index] = values


class OutputRecorder:
    """A forward hook that keeps a copy of the last output (and, if asked, input) of a module.

    Copies, because some architectures update the projection's output in place further down
    the layer, and a kept reference would silently change under us.
    """

    def __init__(self, module: nn.Module, keep_inputs: bool = False):
        self.keep_inputs = keep_inputs
        self.inputs: torch.Tensor | None = None
        self.outputs: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, args, output):
        self.outputs = output.detach().clone()
        if self.keep_inputs:
            self.inputs = args[0].detach().clone()

    def remove(self) -> None:
        self._handle.remove()


@contextmanager
def recording(module: nn.Module, keep_inputs: bool = False) -> Iterator[OutputRecorder]:
    recorder = OutputRecorder(module, keep_inputs)
    try:
        yield recorder
    finally:
        recorder.remove()


@contextmanager
def restored(module: nn.Module, row: int, tokens: list[int], values: torch.Tensor):
    """Overwrite output[..., tokens, row] with `values` (the baseline's super activation)."""

    def hook(_module, _args, output):
        output = output.clone()
        flat = output.view(-1, output.shape[-1])
        flat[tokens, row] = values.to(output.dtype)
        return output

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def spike_tokens(baseline_outputs: torch.Tensor, row: int, threshold: float) -> list[int]:
    """Tokens of an evaluation window where the baseline's output row reaches the spike level."""
    column = baseline_outputs.reshape(-1, baseline_outputs.shape[-1])[:, row].abs()
    return torch.nonzero(column >= threshold).view(-1).tolist()


@contextmanager
def applied(
    plan: VariantPlan,
    down_proj: nn.Module,
    site: ProjectionSite,
    baseline_outputs: torch.Tensor | None,
):
    """Make `down_proj` behave as the variant does while the block runs one window through it,
    and record the super activation of each watched row before (baseline) and after (this
    variant). For a variant inside routed experts (`plan.routed`), `down_proj` is the layer's
    experts module and `site` its routed site: one expert's weights are zeroed, or whole experts
    pruned; the output watched and restored is the experts module's (routed and weighted)."""
    with ExitStack() as stack:
        if plan.pruned:
            stack.enter_context(pruned(down_proj, site, plan.pruned))
        elif plan.expert is not None:
            stack.enter_context(zeroed_in_expert(down_proj, site, plan.expert, plan.zeroed))
        else:
            stack.enter_context(zeroed(getattr(down_proj, site.parameter), site, plan.zeroed))
        watched: list[tuple[int, list[int], torch.Tensor]] = []
        if baseline_outputs is not None:
            flat = baseline_outputs.reshape(-1, baseline_outputs.shape[-1])
            for row, threshold in plan.watch.items():
                tokens = spike_tokens(baseline_outputs, row, threshold)
                if tokens:
                    watched.append((row, tokens, flat[tokens, row]))
        for row, tokens, before in watched:
            if row == plan.restore_row:
                stack.enter_context(restored(down_proj, row, tokens, before))
        recorder = stack.enter_context(recording(down_proj))
        yield
        assert recorder.outputs is not None, "the variant's pass ran the projection"
        after = recorder.outputs.reshape(-1, recorder.outputs.shape[-1])
        for row, tokens, before in watched:
            plan.super_activation.setdefault(row, []).append(
                {
                    "tokens": tokens,
                    "before": before.float().tolist(),
                    "after": after[tokens, row].float().tolist(),
                }
            )
