"""Judging the candidates: which variants to run, on which evaluation windows, when to stop each,
what to run next, and the verdict of every candidate.

Shared by the streamed sweep and the naive full-model path, which differ only in how a variant's
windows are computed. They call `plan_layer` as detection finds each layer's candidates, compute
what `pending` asks for, hand back per-token scores with `record`, and call `advance` after each
round; `advance` decides which variants stop and plans the follow-ups:

- an ablation or a control with a threshold is scored window by window (at the looks of
  `statistics.look_windows`) until its interval excludes its threshold, or to the end of the
  budget (`sequential=False`: every variant to the end, the exhaustive evaluation);
- a control without a threshold (top-k) is scored on the windows of the tensor's control that
  has one (random);
- a shadow group whose ablation is verified is then ablated member by member, strongest first;
- a candidate zeroed alone whose interval shows it moved perplexity by more than
  `RESTORE_MIN_RATIO` gets a restore variant, on the same windows as its ablation: there is a
  rise to explain. Below that there is nothing to restore.
"""

import math
from dataclasses import dataclass, field

import torch

from workers.science.detection import Candidate, ExpertCandidate
from workers.science.evaluation import TokenScores, WindowScore
from workers.science.validation.controls import CONTROLS
from workers.science.validation.selection import MAX_ABLATIONS_PER_LAYER, Selection, Unit, select
from workers.science.validation.statistics import Interval, interval, look_windows
from workers.science.validation.variants import (
    Kind,
    VariantPlan,
    ablation_plan,
    control_plans,
    prune_control_plan,
    prune_plan,
    restore_plan,
)
from workers.science.validation.verdict import (
    CANDIDATE,
    MIN_PERPLEXITY_RATIO,
    State,
    expert_verdict,
    verdict,
)

# Random other experts of an MoE layer pruned, one variant each, as the controls of its super
# experts: enough to see a layer in which pruning any expert breaks the model, few enough to
# stay cheap (each is a variant on the evaluation windows).
RANDOM_EXPERT_CONTROLS = 2
# Seeds the choice of those experts (per layer), so a re-run prunes the same ones.
EXPERT_CONTROL_SEED = 2507_23279

# Zeroing a candidate must have raised perplexity by more than this (the interval's low end
# above it) for its super activation to be put back: a rise 100 random weights may cause
# (the random control's tolerance) leaves nothing to explain.
RESTORE_MIN_RATIO = 1.05


@dataclass(eq=False)
class VariantRun:
    """One variant and the windows it is scored on."""

    plan: VariantPlan
    threshold: float | None  # the ratio its interval is tested against; None: no stop rule
    target: list[int]  # windows it must be scored on before its next look
    leader: "VariantRun | None" = None  # a control without a threshold follows this one
    differences: dict[int, torch.Tensor] = field(default_factory=dict)  # window -> per-token
    scores: dict[int, WindowScore] = field(default_factory=dict)
    done: bool = False
    stopped_early: bool = False

    @property
    def missing(self) -> list[int]:
        return [w for w in self.target if w not in self.scores]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.scores.values())

    def window_differences(self) -> list[torch.Tensor]:
        return [self.differences[w] for w in sorted(self.differences)]


@dataclass
class CandidateJudgement:
    """Everything the report says about one candidate's validation."""

    candidate: Candidate
    spike_share: float
    rank: int  # of its unit among the layer's units
    ranked: int  # units in its layer
    skipped: str | None = None
    ablation: VariantRun | None = None
    ablation_interval: Interval | None = None
    zeroed_with: list[tuple[int, int]] = field(default_factory=list)  # (row, col) of its shadows
    restore: VariantRun | None = None
    controls: dict[str, VariantRun] = field(default_factory=dict)
    control_intervals: dict[str, Interval] = field(default_factory=dict)
    state: State = CANDIDATE
    reason: str = ""


@dataclass
class ExpertJudgement:
    """Everything the report says about one super expert's validation."""

    candidate: ExpertCandidate
    pruned: VariantRun | None
    pruned_interval: Interval | None
    controls: dict[int, VariantRun]  # expert pruned -> its run
    control_intervals: dict[int, Interval]
    state: State = CANDIDATE
    reason: str = ""


@dataclass
class _Layer:
    selection: Selection
    units: dict[int, VariantRun]  # column of the unit -> its ablation
    controls: dict[str, VariantRun]
    members: dict[tuple[int, ...], VariantRun] = field(default_factory=dict)
    restores: dict[tuple[int, ...], VariantRun] = field(default_factory=dict)


@dataclass
class _Experts:
    """The super experts of one MoE layer: each pruned, and random other experts pruned."""

    candidates: list[ExpertCandidate]
    pruned: dict[int, VariantRun]  # expert -> its pruning
    controls: dict[int, VariantRun]  # expert -> its pruning as a control


def control_experts(
    layer: int, routed: list[int], exclude: set[int], count: int = RANDOM_EXPERT_CONTROLS
) -> list[int]:
    """`count` experts of the layer drawn from those the router used on the prompts (pruning an
    expert no token reaches would show nothing), none of the candidates; seeded per layer."""
    pool = sorted(set(routed) - exclude)
    generator = torch.Generator().manual_seed(EXPERT_CONTROL_SEED + layer)
    order = torch.randperm(len(pool), generator=generator).tolist()
    return sorted(pool[i] for i in order[:count])


class Judge:
    def __init__(
        self,
        windows: int,
        sequential: bool = True,
        *,
        restores: bool = True,
        ablations_per_layer: int = MAX_ABLATIONS_PER_LAYER,
    ):
        self.windows = windows
        self.looks = look_windows(windows)
        self.sequential = sequential
        # Given weights (the lineage check's) have no super activation seen here to put back,
        # and every one of them is to be judged: no restores, and no cap below their number.
        self.restores = restores
        self.ablations_per_layer = ablations_per_layer
        self.runs: list[VariantRun] = []
        # (layer, expert) -> the judged weights of that tensor (expert None: the dense or shared
        # expert projection).
        self.layers: dict[tuple[int, int | None], _Layer] = {}
        self.experts: dict[int, _Experts] = {}  # layer -> its super experts

    def forks_at(self, layer: int) -> bool:
        """Whether any variant forks from the baseline at `layer` (now or in a later round)."""
        return any(key[0] == layer and judged.units for key, judged in self.layers.items()) or (
            layer in self.experts and bool(self.experts[layer].pruned)
        )

    # ---- planning ------------------------------------------------------------------------

    def first_windows(self) -> list[int]:
        """The windows every new variant is scored on first (all of them when exhaustive)."""
        return list(range(self.looks[0] if self.sequential else self.windows))

    def _new(
        self,
        plan: VariantPlan,
        threshold: float | None,
        leader: VariantRun | None = None,
        target: list[int] | None = None,
    ) -> VariantRun:
        run = VariantRun(
            plan, threshold, target if target is not None else self.first_windows(), leader
        )
        self.runs.append(run)
        return run

    def plan_experts(
        self, layer: int, candidates: list[ExpertCandidate], routed: list[int]
    ) -> list[VariantRun]:
        """The variants that judge one MoE layer's super experts: each pruned (still routed to,
        output zero), and `RANDOM_EXPERT_CONTROLS` other experts the router used, pruned the same
        way, each on its own."""
        if not candidates or not self.windows:
            return []
        pruned = {
            c.expert: self._new(prune_plan(layer, c.expert), MIN_PERPLEXITY_RATIO)
            for c in candidates
        }
        others = control_experts(layer, routed, {c.expert for c in candidates})
        controls = {
            e: self._new(prune_control_plan(layer, e), MIN_PERPLEXITY_RATIO) for e in others
        }
        self.experts[layer] = _Experts(candidates, pruned, controls)
        return [*pruned.values(), *controls.values()]

    def plan_layer(
        self,
        layer: int,
        candidates: list[Candidate],
        weight_out_in: torch.Tensor,
        expert: int | None = None,
    ) -> list[VariantRun]:
        """The variants that judge one tensor's candidates (none when the budget has no window):
        a layer's dense projection, or one routed expert's down projection (`expert`)."""
        selection = select(candidates, self.ablations_per_layer)
        units = {}
        controls: dict[str, VariantRun] = {}
        if selection.ablated and self.windows:
            units = {
                u.col: self._new(ablation_plan(u), MIN_PERPLEXITY_RATIO) for u in selection.ablated
            }
            exclude = {(c.row, c.col) for c in candidates}
            plans = control_plans(layer, weight_out_in, exclude, expert)
            by_name = {c.name: c for c in CONTROLS}
            leader = None
            for plan, control in zip(plans, CONTROLS, strict=True):
                if control.threshold is not None and leader is None:
                    leader = controls[control.name] = self._new(plan, control.threshold)
            for plan, control in zip(plans, CONTROLS, strict=True):
                if control.name not in controls:
                    controls[control.name] = self._new(
                        plan, by_name[control.name].threshold, leader=leader
                    )
        self.layers[(layer, expert)] = _Layer(selection, units, controls)
        return list(units.values()) + list(controls.values())

    def pending(self) -> list[VariantRun]:
        """Variants with windows still to be computed, in the order they were planned."""
        return [r for r in self.runs if not r.done and r.missing]

    def record(
        self, run: VariantRun, window: int, variant: TokenScores, baseline: TokenScores
    ) -> None:
        """One window of a variant, scored against the baseline on the same tokens."""
        run.differences[window] = variant.nll.double() - baseline.nll.double()
        run.scores[window] = WindowScore.of(variant)

    def interval(self, run: VariantRun) -> Interval:
        return interval(run.window_differences(), len(self.looks))

    # ---- after each round ----------------------------------------------------------------

    def advance(self) -> bool:
        """Stop what is decided, extend what is not, plan follow-ups; True while work remains."""
        for experts in self.experts.values():
            for run in [*experts.pruned.values(), *experts.controls.values()]:
                if not run.done and not run.missing:
                    self._look(run, vetoed=False)
        for (layer, _), judged in self.layers.items():
            for run in [
                *judged.controls.values(),
                *judged.units.values(),
                *judged.members.values(),
            ]:
                if run.leader is None and not run.done and not run.missing:
                    self._look(run, vetoed=self._vetoed(judged))
            for run in judged.controls.values():
                if run.leader is not None:
                    run.target = list(run.leader.target)
                    run.done = run.leader.done and not run.missing
                    run.stopped_early = run.leader.stopped_early
            for run in judged.restores.values():
                run.done = not run.missing
            self._follow_ups(layer, judged)
        return bool(self.pending())

    def _vetoed(self, judged: _Layer) -> bool:
        for control in CONTROLS:
            run = judged.controls.get(control.name)
            if (
                run is not None
                and run.leader is None
                and run.scores
                and control.veto(self.interval(run))
            ):
                return True
        return False

    def _look(self, run: VariantRun, vetoed: bool) -> None:
        scored = len(run.scores)
        decided = run.threshold is not None and self.interval(run).excludes(run.threshold)
        # An ablation in a tensor whose random control vetoes is rejected whatever it shows.
        if run.plan.kind == Kind.ABLATE and vetoed:
            decided = True
        if decided or scored >= self.windows:
            run.done = True
            run.stopped_early = scored < self.windows
            return
        following = next(n for n in self.looks if n > scored)
        run.target = list(range(following))

    def _follow_ups(self, layer: int, judged: _Layer) -> None:
        for unit in judged.selection.ablated:
            run = judged.units.get(unit.col)  # none when the budget has no window
            if run is None or not run.done:
                continue
            if unit.is_group:
                if self.interval(run).above(MIN_PERPLEXITY_RATIO) and not self._vetoed(judged):
                    for member in unit.members:
                        if member.key not in judged.members:
                            single = Unit(
                                layer,
                                member.col,
                                [member],
                                unit.spike_share,
                                unit.rank,
                                unit.expert,
                            )
                            judged.members[member.key] = self._new(
                                ablation_plan(single), MIN_PERPLEXITY_RATIO
                            )
            else:
                self._maybe_restore(judged, unit.members[0], run)
        for key, run in judged.members.items():
            if run.done:
                member = next(
                    m for u in judged.selection.ablated for m in u.members if m.key == key
                )
                self._maybe_restore(judged, member, run)

    def _maybe_restore(self, judged: _Layer, candidate: Candidate, ablation: VariantRun) -> None:
        if not self.restores or candidate.key in judged.restores:
            return
        if self.interval(ablation).low > math.log(RESTORE_MIN_RATIO):
            judged.restores[candidate.key] = self._new(
                restore_plan(candidate), None, target=sorted(ablation.scores)
            )

    # ---- the verdicts --------------------------------------------------------------------

    def judgements(self) -> dict[tuple[int, ...], CandidateJudgement]:
        out = {}
        for (layer, _), judged in self.layers.items():
            selection = judged.selection
            control_intervals = {
                n: self.interval(r) for n, r in judged.controls.items() if r.scores
            }
            for unit in selection.skipped:
                for member in unit.members:
                    out[member.key] = CandidateJudgement(
                        member,
                        selection.shares[member.key],
                        unit.rank,
                        selection.ranked,
                        skipped=(
                            f"not validated: its input channel ranks {unit.rank} of "
                            f"{selection.ranked} in layer {layer} by the share of the spike it "
                            f"carries, beyond the {len(selection.ablated)} ablated per layer"
                        ),
                        reason="skipped",
                    )
            for unit in selection.ablated:
                group = judged.units.get(unit.col)
                for member in unit.members:
                    own = judged.members.get(member.key)
                    run = own or group
                    j = CandidateJudgement(
                        member,
                        selection.shares[member.key],
                        unit.rank,
                        selection.ranked,
                        ablation=run,
                        ablation_interval=self.interval(run)
                        if run is not None and run.scores
                        else None,
                        zeroed_with=[]
                        if own or not unit.is_group
                        else [(m.row, m.col) for m in unit.members if m is not member],
                        restore=judged.restores.get(member.key),
                        controls=judged.controls,
                        control_intervals=control_intervals,
                    )
                    if j.ablation_interval is None:
                        j.state, j.reason = (
                            CANDIDATE,
                            "not validated: no evaluation window was scored",
                        )
                    else:
                        subject = "zeroing it"
                        if j.zeroed_with:
                            subject = (
                                f"zeroing it with the {len(j.zeroed_with)} other rows its input "
                                f"channel {unit.col} feeds"
                            )
                        j.state, j.reason = verdict(j.ablation_interval, control_intervals, subject)
                    out[member.key] = j
        return out

    def expert_judgements(self) -> dict[tuple[int, int], ExpertJudgement]:
        """(layer, expert) -> the verdict on each super expert candidate that was pruned."""
        out = {}
        for experts in self.experts.values():
            intervals = {e: self.interval(r) for e, r in experts.controls.items() if r.scores}
            for candidate in experts.candidates:
                run = experts.pruned.get(candidate.expert)
                interval_ = self.interval(run) if run is not None and run.scores else None
                j = ExpertJudgement(candidate, run, interval_, experts.controls, intervals)
                if interval_ is None:
                    j.state, j.reason = CANDIDATE, "not validated: no evaluation window was scored"
                else:
                    j.state, j.reason = expert_verdict(interval_, intervals)
                out[candidate.key] = j
        return out

    # ---- accounting ----------------------------------------------------------------------

    def variant_tokens(self) -> int:
        return sum(r.tokens for r in self.runs)

    def exhaustive_variant_tokens(self, budget_tokens: int) -> int:
        """What the same variants would have cost scored on the whole budget."""
        return len(self.runs) * budget_tokens
