"""Proving or rejecting a candidate by ablation: the variants to run, how a variant changes its
layer, and the verdict rule. Shared by the streamed sweep and the reference (full-model) path."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from workers.architectures import Architecture

# Controls zero other weights of the same tensor: 100 random ones, and the k largest others
# (DESIGN.md measured both on SmolLM2: 20.19 -> 20.19 and 21.97).
RANDOM_CONTROL_WEIGHTS = 100
TOP_K_CONTROL_WEIGHTS = 10
# Fixed so that a re-run draws the same random control weights.
CONTROL_SEED = 2411_07191

# The verdict rule. A super weight at least doubles perplexity when zeroed (the paper reports
# orders of magnitude; SmolLM2: 20.19 -> 378.6), while zeroing 100 random weights of the same
# tensor stays within 5%: otherwise the tensor or the evaluation is too fragile to judge.
MIN_PERPLEXITY_RATIO = 2.0
MAX_RANDOM_CONTROL_RATIO = 1.05

Coordinate = tuple[int, int]  # (row, col): output channel, input channel


class Kind:
    ABLATE = "ablate"  # the candidate zeroed
    RESTORE = "restore"  # the candidate zeroed, its super activation put back
    RANDOM = "control_random"
    TOP_K = "control_top_k"


@dataclass
class VariantPlan:
    kind: str
    layer: int
    zeroed: list[Coordinate]
    candidate: tuple[int, int, int] | None = None  # (layer, row, col) for ablate/restore
    restore_row: int | None = None
    # Filled while the variant passes its layer: the spiking output before and after, per window.
    super_activation: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.candidate is None:
            return f"{self.kind}@{self.layer}"
        return f"{self.kind}@{self.layer}:{self.candidate[1]},{self.candidate[2]}"


def as_out_in(weight: torch.Tensor, architecture: Architecture) -> torch.Tensor:
    """The down projection's weight viewed as [out (row), in (col)] whatever its layout."""
    return weight if architecture.stored_index(0, 1) == [0, 1] else weight.t()


def _random_coordinates(
    rows: int, cols: int, exclude: set[Coordinate], count: int, generator: torch.Generator
) -> list[Coordinate]:
    """`count` distinct coordinates drawn uniformly, none in `exclude`. Drawn by rejection
    rather than from a permutation of the whole tensor, which would cost 8 bytes per weight."""
    chosen: list[Coordinate] = []
    seen = set(exclude)
    while len(chosen) < count:
        for flat in torch.randint(rows * cols, (count,), generator=generator).tolist():
            coordinate = divmod(flat, cols)
            if coordinate not in seen and len(chosen) < count:
                seen.add(coordinate)
                chosen.append(coordinate)
    return chosen


def control_coordinates(
    weight_out_in: torch.Tensor, exclude: set[Coordinate], layer: int
) -> tuple[list[Coordinate], list[Coordinate]]:
    """(random, top-k) control weights of one tensor, none of them a candidate."""
    rows, cols = weight_out_in.shape
    generator = torch.Generator().manual_seed(CONTROL_SEED + layer)
    random = _random_coordinates(rows, cols, exclude, RANDOM_CONTROL_WEIGHTS, generator)
    largest = torch.topk(weight_out_in.abs().reshape(-1), TOP_K_CONTROL_WEIGHTS + len(exclude)).indices
    top = [divmod(int(i), cols) for i in largest]
    top = [c for c in top if c not in exclude][:TOP_K_CONTROL_WEIGHTS]
    return random, top


def plan_variants(
    layer: int, candidates: list[Coordinate], weight_out_in: torch.Tensor
) -> list[VariantPlan]:
    """Every run needed to judge the candidates of one layer (they share one tensor)."""
    if not candidates:
        return []
    random, top = control_coordinates(weight_out_in, set(candidates), layer)
    plans = []
    for row, col in candidates:
        key = (layer, row, col)
        plans.append(VariantPlan(Kind.ABLATE, layer, [(row, col)], key))
        plans.append(VariantPlan(Kind.RESTORE, layer, [(row, col)], key, restore_row=row))
    plans.append(VariantPlan(Kind.RANDOM, layer, random))
    plans.append(VariantPlan(Kind.TOP_K, layer, top))
    return plans


@contextmanager
def zeroed(weight: torch.Tensor, architecture: Architecture, coordinates: list[Coordinate]):
    """Zero weights in place for the duration of the block, then put them back exactly."""
    stored = [architecture.stored_index(r, c) for r, c in coordinates]
    index = (torch.tensor([s[0] for s in stored]), torch.tensor([s[1] for s in stored]))
    with torch.no_grad():
        saved = weight[index].clone()
        weight[index] = 0
        try:
            yield
        finally:
            weight[index] = saved


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
    architecture: Architecture,
    baseline_outputs: torch.Tensor | None,
    threshold: float | None,
):
    """Make `down_proj` behave as the variant does while the block runs one window through it,
    and record the super activation before (baseline) and after (this variant)."""
    with ExitStack() as stack:
        stack.enter_context(zeroed(down_proj.weight, architecture, plan.zeroed))
        tokens: list[int] = []
        row = plan.candidate[1] if plan.candidate else None
        if row is not None and baseline_outputs is not None and threshold is not None:
            tokens = spike_tokens(baseline_outputs, row, threshold)
            before = baseline_outputs.reshape(-1, baseline_outputs.shape[-1])[tokens, row]
            if plan.restore_row is not None and tokens:
                stack.enter_context(restored(down_proj, row, tokens, before))
        recorder = stack.enter_context(recording(down_proj))
        yield
        if row is not None and tokens:
            after = recorder.outputs.reshape(-1, recorder.outputs.shape[-1])[tokens, row]
            plan.super_activation.append(
                {"tokens": tokens, "before": before.float().tolist(), "after": after.float().tolist()}
            )


def verdict(baseline_ppl: float, ablated_ppl: float, random_control_ppl: float) -> tuple[str, str]:
    ratio = ablated_ppl / baseline_ppl
    control = random_control_ppl / baseline_ppl
    if control > MAX_RANDOM_CONTROL_RATIO:
        return "rejected", (
            f"random control moved perplexity x{control:.3f} (> x{MAX_RANDOM_CONTROL_RATIO}): "
            "the tensor is too fragile to attribute the effect"
        )
    if ratio >= MIN_PERPLEXITY_RATIO:
        return "verified", (
            f"zeroing it multiplies perplexity by {ratio:.2f} (>= {MIN_PERPLEXITY_RATIO}) while "
            f"100 random weights move it x{control:.3f}"
        )
    return "rejected", f"zeroing it multiplies perplexity by only {ratio:.3f} (< {MIN_PERPLEXITY_RATIO})"
