"""One layer's detection, whatever its feed-forward block is, shared by the streamed sweep and the
naive full-model path: what to record while the prompts pass the layer, what detection makes of
it, and the variants the judge plans for it.

A dense layer has one output projection (`FeedForward.matrix_site`). A mixture-of-experts layer
has routed experts (`routed_site`), recorded per expert on the tokens the router sent each
(`workers.science.experts`), and may have a shared expert beside them (its `matrix_site`). A layer
with neither (a hybrid's mixer-only layer) is run with nothing to record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from workers.science.detection import (
    Candidate,
    DetectionState,
    ExpertActivity,
    ExpertCandidate,
    summarize,
    summarize_expert,
)
from workers.science.experts import ExpertCall, ExpertRecorder, expert_matrix, recording_experts
from workers.science.feed_forward import FeedForward, ProjectionSite
from workers.science.validation.ablation import OutputRecorder, recording
from workers.science.validation.judge import Judge, VariantRun


@dataclass
class LayerSites:
    """A decoder layer's projection sites and their modules, as loaded."""

    layer: int
    matrix: ProjectionSite | None  # dense projection or shared expert
    matrix_module: nn.Module | None
    routed: ProjectionSite | None
    experts_module: nn.Module | None
    block: nn.Module | None = None  # the module holding the routed experts and their router

    @classmethod
    def of(cls, feed_forward: FeedForward, layer: int, module: nn.Module) -> LayerSites:
        matrix, routed = feed_forward.matrix_site(layer), feed_forward.routed_site(layer)
        return cls(
            layer,
            matrix,
            module.get_submodule(matrix.module) if matrix is not None else None,
            routed,
            module.get_submodule(routed.module) if routed is not None else None,
            module.get_submodule(routed.module.rpartition(".")[0]) if routed is not None else None,
        )

    @property
    def empty(self) -> bool:
        return self.matrix is None and self.routed is None

    def matrix_weight(self) -> torch.Tensor:
        """The dense (or shared-expert) projection viewed [out, in]."""
        assert self.matrix is not None, f"layer {self.layer} has no dense projection"
        return self.matrix.out_in(getattr(self.matrix_module, self.matrix.parameter))

    def expert_weight(self, expert: int) -> torch.Tensor:
        assert self.routed is not None and self.experts_module is not None, (
            f"layer {self.layer}: no experts"
        )
        return expert_matrix(self.experts_module, self.routed, expert)

    def for_plan(self, routed: bool) -> tuple[ProjectionSite, nn.Module]:
        """The site and module a variant changes: the routed experts', or the dense one's."""
        site, module = (
            (self.routed, self.experts_module) if routed else (self.matrix, self.matrix_module)
        )
        assert site is not None and module is not None, f"layer {self.layer} has no such projection"
        return site, module

    def modules(self) -> dict[str, nn.Module]:
        """Every module whose output a variant forked here may watch, by its path in the layer."""
        found: dict[str, nn.Module] = {}
        if self.matrix is not None and self.matrix_module is not None:
            found[self.matrix.module] = self.matrix_module
        if self.routed is not None and self.experts_module is not None:
            found[self.routed.module] = self.experts_module
        return found


@dataclass
class LayerRecorders:
    dense: OutputRecorder | None = None
    experts: ExpertRecorder | None = None


@contextmanager
def recording_layer(sites: LayerSites) -> Iterator[LayerRecorders]:
    """Record the layer's projections while the prompts pass it."""
    with ExitStack() as stack:
        recorders = LayerRecorders()
        if sites.matrix_module is not None:
            recorders.dense = stack.enter_context(recording(sites.matrix_module, keep_inputs=True))
        if sites.routed is not None and sites.experts_module is not None:
            recorders.experts = stack.enter_context(
                recording_experts(sites.experts_module, sites.routed, sites.block)
            )
        yield recorders


@dataclass
class LayerFindings:
    """What detection found in one layer."""

    layer: int
    dense: list[Candidate] = field(default_factory=list)  # dense or shared-expert projection
    routed: dict[int, list[Candidate]] = field(default_factory=dict)  # expert -> its weights
    super_experts: list[ExpertCandidate] = field(default_factory=list)
    routed_experts: list[int] = field(default_factory=list)  # experts the router used

    def __bool__(self) -> bool:
        return bool(self.dense or self.routed or self.super_experts)


def _split_by_prompt(
    calls: list[ExpertCall], sequence: int, lengths: list[int]
) -> list[dict[int, ExpertActivity]]:
    """Per prompt of a right-padded batch ([prompts, `sequence`] flattened), each expert's rows
    of that prompt's real tokens (padding never counts)."""
    out: list[dict[int, ExpertActivity]] = [{} for _ in lengths]
    for call in calls:
        prompt, position = call.tokens // sequence, call.tokens % sequence
        for i, length in enumerate(lengths):
            rows = torch.nonzero((prompt == i) & (position < length)).view(-1)
            if rows.numel():
                out[i][call.expert] = summarize_expert(
                    call.expert,
                    call.inputs[rows],
                    call.outputs[rows],
                    position[rows],
                    call.weights[rows],
                )
    return out


def observe(
    state: DetectionState,
    sites: LayerSites,
    recorders: LayerRecorders,
    shape: tuple[int, int],
    lengths: list[int],
) -> LayerFindings:
    """Detection's reading of one layer from what its recorders kept: `shape` is the prompts'
    batch [prompts, tokens], `lengths` each prompt's real tokens."""
    layer = sites.layer
    found = LayerFindings(layer)
    shared = None
    if recorders.dense is not None:
        # [B, T, features], whatever shape the architecture gives its projection (OPT: [B*T, ...]).
        assert (
            recorders.dense.inputs is not None and recorders.dense.outputs is not None
        )  # kept inputs
        inputs = recorders.dense.inputs.reshape(*shape, -1)
        outputs = recorders.dense.outputs.reshape(*shape, -1)
        shared = [summarize(inputs[i, :n], outputs[i, :n]) for i, n in enumerate(lengths)]
    if recorders.experts is None:
        if shared is not None:
            found.dense = state.observe_layer(layer, shared, sites.matrix_weight())
        return found
    experts = _split_by_prompt(recorders.experts.calls, shape[1], lengths)
    dense, routed = state.observe_experts(
        layer,
        experts,
        sites.expert_weight,
        shared,
        sites.matrix_weight() if shared is not None else None,
    )
    found.dense = dense
    for candidate in routed:
        assert candidate.expert is not None  # a routed candidate names its expert
        found.routed.setdefault(candidate.expert, []).append(candidate)
    found.super_experts = [c for key, c in sorted(state.super_experts.items()) if key[0] == layer]
    found.routed_experts = sorted({e for by_expert in experts for e in by_expert})
    return found


def plan(judge: Judge, sites: LayerSites, found: LayerFindings) -> list[VariantRun]:
    """The variants that judge what one layer revealed: its dense (or shared-expert) weights,
    each routed expert's weights, and its super experts."""
    runs = []
    if found.dense:
        runs += judge.plan_layer(sites.layer, found.dense, sites.matrix_weight())
    for expert, candidates in sorted(found.routed.items()):
        runs += judge.plan_layer(
            sites.layer, candidates, sites.expert_weight(expert), expert=expert
        )
    if found.super_experts:
        runs += judge.plan_experts(sites.layer, found.super_experts, found.routed_experts)
    return runs
