"""Routed experts at run time: what each expert's down projection saw and emitted, on the tokens
the router really sent it, and where an expert's weights are in the fused parameters. (How
validation changes an expert, one weight zeroed or the whole expert pruned, is in
`workers.science.validation.ablation`.)

transformers 5 holds a layer's routed experts in fused 3-D parameters (`experts.gate_up_proj`,
`experts.down_proj`) and computes them without `nn.Linear`, so no forward hook on a linear layer
sees an expert. Three calling conventions exist:

- *routed*: `experts(hidden_states, top_k_index, top_k_weights)` (Mixtral, Qwen-MoE, DeepSeek,
  gpt-oss, OLMoE, Granite-MoE and nearly every other family): the router's choice is an argument.
  The capture re-runs the experts module's own (eager) code once per expert hit, on exactly the
  tokens routed to it with the weight 1, and intercepts the operation that multiplies by the down
  projection: its input is the expert's down-projection input X, whatever the activation,
  gating, clamping or interleaving the family uses. The down-projection output is then X times
  the expert's matrix (plus its bias): the raw output, before the router's weighting.
- *dense*: `experts(hidden_states)` on every token for every expert, inputs already scaled by
  the router (Llama 4): an expert's tokens are those whose routed input is not zero.
- *parallel*: the down projection is a module of its own, `output_linear(inputs, expert_size)`,
  on rows grouped by expert (JetMoE): its input is X itself, and the router beside it names each
  row's token and weight.

The model's own forward is never changed by the capture: its output is the experts module's
real output, and the per-expert runs happen beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from workers.science.errors import UnsupportedArchitecture
from workers.science.feed_forward import (
    PARALLEL_CALL,
    ROUTED_ARGUMENTS,
    ROUTED_CALL,
    Layout,
    ProjectionSite,
    eager_forward,
)

# Operations that index a parameter (a view of it is then multiplied, and that is the call we
# want): never the down projection's multiplication itself.
_INDEXING = {
    "__getitem__",
    "select",
    "index_select",
    "view",
    "reshape",
    "transpose",
    "t",
    "permute",
    "contiguous",
    "to",
    "__get__",
    "size",
    "dim",
    "shape",
}


@dataclass
class ExpertCall:
    """One expert's down projection on the tokens routed to it, in one forward call."""

    expert: int
    tokens: torch.Tensor  # [n] flat token positions (over the call's [batch * tokens])
    weights: torch.Tensor  # [n] the router's weight of this expert for each token (float32)
    inputs: torch.Tensor  # [n, inner] float32: the down projection's input X
    outputs: torch.Tensor  # [n, d_model] float32: its output X W^T (+ bias), unweighted


def down_parameters(
    module: nn.Module, site: ProjectionSite
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fused down projection [experts, ., .] and its bias [experts, d_model] (or None)."""
    weight = module.get_parameter(site.parameter)
    bias = getattr(module, f"{site.parameter}_bias", None)
    return weight, bias if isinstance(bias, torch.Tensor) else None


def expert_matrix(module: nn.Module, site: ProjectionSite, expert: int) -> torch.Tensor:
    """Expert `expert`'s down projection viewed [out (row), in (col)]."""
    weight, _ = down_parameters(module, site)
    return weight[expert].t() if site.layout is Layout.EXPERTS_IN_OUT else weight[expert]


def stored_index(site: ProjectionSite, expert: int, row: int, col: int) -> list[int]:
    """(expert, row, col) as the loaded fused parameter indexes it."""
    return [expert, col, row] if site.layout is Layout.EXPERTS_IN_OUT else [expert, row, col]


class _DownInput(TorchFunctionMode):
    """Sees every torch function call while the experts' code runs and keeps the input of the
    first one that multiplies by the down-projection parameter (or a view of it)."""

    def __init__(self, weight: torch.Tensor, inner: int):
        super().__init__()
        self.storage = weight.untyped_storage().data_ptr()
        self.inner_width = inner  # not `inner`: TorchFunctionMode declares that name (a mode)
        self.found: torch.Tensor | None = None

    def _shares(self, value) -> bool:
        return (
            isinstance(value, torch.Tensor)
            and value.device.type != "meta"
            and value.untyped_storage().data_ptr() == self.storage
        )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if self.found is None and name not in _INDEXING:
            values = [*args, *kwargs.values()]
            if any(self._shares(v) for v in values):
                others = [
                    v
                    for v in values
                    if isinstance(v, torch.Tensor)
                    and not self._shares(v)
                    and v.dim() >= 2
                    and v.shape[-1] == self.inner_width
                ]
                if others:
                    self.found = others[0].detach()
        return result


def _down_input(module: nn.Module, site: ProjectionSite, *args) -> torch.Tensor:
    weight, _ = down_parameters(module, site)
    mode = _DownInput(weight, site.inner)
    with torch.no_grad(), mode:
        eager_forward(module)(module, *args)
    if mode.found is None:
        raise UnsupportedArchitecture(
            f"{type(module).__name__}: no operation multiplies by its {site.parameter} "
            "parameter, so the experts' down-projection input cannot be seen"
        )
    return mode.found.float()


def _outputs(
    module: nn.Module, site: ProjectionSite, expert: int, inputs: torch.Tensor
) -> torch.Tensor:
    weight, bias = down_parameters(module, site)
    out = inputs @ expert_matrix(module, site, expert).float().t()
    return out + bias[expert].float() if bias is not None else out


def routed_calls(
    module: nn.Module,
    site: ProjectionSite,
    hidden: torch.Tensor,
    top_k_index: torch.Tensor,
    top_k_weights: torch.Tensor,
) -> list[ExpertCall]:
    """Every expert the router chose, with its tokens, as the experts' own code computes it."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    index = top_k_index.reshape(flat.shape[0], -1)
    weights = top_k_weights.reshape(flat.shape[0], -1).float()
    calls = []
    for expert in torch.unique(index).tolist():
        if not 0 <= expert < (site.num_experts or 0):
            continue  # transformers' sentinel for "no expert" (expert parallelism)
        chosen = index == expert
        tokens = torch.nonzero(chosen.any(dim=1)).view(-1)
        weight = (weights * chosen).sum(dim=1)[tokens]
        only = torch.full((tokens.numel(), 1), expert, dtype=index.dtype, device=index.device)
        ones = torch.ones((tokens.numel(), 1), dtype=top_k_weights.dtype, device=index.device)
        inputs = _down_input(module, site, flat[tokens], only, ones)
        calls.append(
            ExpertCall(
                expert,
                tokens.cpu(),
                weight.cpu(),
                inputs.cpu(),
                _outputs(module, site, expert, inputs).cpu(),
            )
        )
    return calls


def dense_calls(
    module: nn.Module, site: ProjectionSite, routed_in: torch.Tensor
) -> list[ExpertCall]:
    """Experts that run every token on inputs the router already scaled (Llama 4): an expert's
    tokens are those whose routed input is not zero."""
    experts = site.num_experts or 0
    per_expert = routed_in.reshape(experts, -1, routed_in.shape[-1])
    inputs = _down_input(module, site, routed_in).reshape(experts, per_expert.shape[1], -1)
    calls = []
    for expert in range(experts):
        tokens = torch.nonzero(per_expert[expert].abs().amax(dim=-1) > 0).view(-1)
        if tokens.numel() == 0:
            continue
        x = inputs[expert, tokens]
        calls.append(
            ExpertCall(
                expert,
                tokens.cpu(),
                torch.ones(tokens.numel()),
                x.cpu(),
                _outputs(module, site, expert, x).cpu(),
            )
        )
    return calls


def parallel_calls(
    module: nn.Module,
    site: ProjectionSite,
    inputs: torch.Tensor,
    sizes,
    tokens: torch.Tensor,
    gates: torch.Tensor,
) -> list[ExpertCall]:
    """Parallel experts (JetMoE): the down projection itself is the module, its input the rows
    of every expert one after the other (`sizes` rows each); the router said which token each
    row is (`tokens`) and with what weight (`gates`)."""
    calls, start = [], 0
    for expert, size in enumerate(int(n) for n in sizes):
        if size:
            x = inputs[start : start + size].detach().float()
            calls.append(
                ExpertCall(
                    expert,
                    tokens[start : start + size].cpu(),
                    gates[start : start + size].float().cpu(),
                    x.cpu(),
                    _outputs(module, site, expert, x).cpu(),
                )
            )
        start += size
    return calls


# Parallel experts' router, a sibling module of this name, returns (sorted experts, token of each
# row, gate of each row, rows per expert, logits).
PARALLEL_ROUTER = "router"


class ExpertRecorder:
    """A forward hook on a layer's experts module: the per-expert calls of its last forward and
    its real (combined) output. `block`: the module holding the experts and their router."""

    def __init__(self, module: nn.Module, site: ProjectionSite, block: nn.Module | None = None):
        self.module, self.site = module, site
        self.calls: list[ExpertCall] = []
        self.outputs: torch.Tensor | None = None
        self._routing: tuple | None = None
        self._handles = [module.register_forward_hook(self._hook, with_kwargs=True)]
        if site.call == PARALLEL_CALL:
            router = getattr(block, PARALLEL_ROUTER, None)
            if router is None:
                raise UnsupportedArchitecture(
                    f"{type(module).__name__}: parallel experts without a router beside them"
                )
            self._handles.append(router.register_forward_hook(self._route))

    def _route(self, _module, _args, output):
        self._routing = (output[1], output[2])

    def _hook(self, module, args, kwargs, output):
        values = [*args, *kwargs.values()]
        self.outputs = (output[0] if isinstance(output, tuple) else output).detach().clone()
        if self.site.call == PARALLEL_CALL:
            assert self._routing is not None, "the router's hook ran before the experts"
            tokens, gates = self._routing
            self.calls = parallel_calls(module, self.site, values[0], values[1], tokens, gates)
        elif self.site.call == ROUTED_CALL:
            hidden, top_k_index, top_k_weights = values[:ROUTED_ARGUMENTS]
            self.calls = routed_calls(module, self.site, hidden, top_k_index, top_k_weights)
        else:
            self.calls = dense_calls(module, self.site, values[0])

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def recording_experts(
    module: nn.Module, site: ProjectionSite, block: nn.Module | None = None
) -> Iterator[ExpertRecorder]:
    recorder = ExpertRecorder(module, site, block)
    try:
        yield recorder
    finally:
        recorder.remove()
