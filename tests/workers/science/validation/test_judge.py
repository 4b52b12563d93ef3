"""The judge's bookkeeping, driven with per-token differences of known size instead of a model:
which variants run on which windows, when each stops, what follows, and the verdicts."""

import math

import torch

from tests.helpers import candidate
from workers.science.evaluation import TokenScores
from workers.science.validation.judge import RESTORE_MIN_RATIO, Judge, VariantRun
from workers.science.validation.selection import MAX_ABLATIONS_PER_LAYER
from workers.science.validation.statistics import BLOCK_TOKENS
from workers.science.validation.variants import Kind

PREDICTIONS = 255
WINDOWS = 4


def _scores(nll: torch.Tensor) -> TokenScores:
    return TokenScores(nll.float(), torch.zeros_like(nll).float(), torch.zeros_like(nll).float())


# Spread of the per-token differences: an ablation that changes the model moves some tokens much
# more than others; a control barely moves any (SmolLM2: per-token standard deviations 0.1-2.2
# for its ablations, 0.02 for 100 random weights).
ABLATION_NOISE = 0.3
CONTROL_NOISE = 0.02


def drive(judge: Judge, effect, seed: int = 0) -> int:
    """Compute what the judge asks for, round after round: the per-token difference of a variant
    is `effect(run)` (a log ratio) plus noise. Returns the number of rounds."""
    generator = torch.Generator().manual_seed(seed)
    rounds = 0
    while pending := judge.pending():
        rounds += 1
        for run in pending:
            for w in run.missing:
                base = 3.0 + torch.rand(PREDICTIONS, generator=generator)
                spread = ABLATION_NOISE if run.plan.kind == Kind.ABLATE else CONTROL_NOISE
                noise = spread * torch.randn(PREDICTIONS, generator=generator)
                judge.record(run, w, _scores(base + effect(run) + noise), _scores(base))
        judge.advance()
    return rounds


def _weight() -> torch.Tensor:
    return torch.randn(16, 32, generator=torch.Generator().manual_seed(1))


def test_clear_verdicts_stop_after_the_first_window_and_a_moved_weight_is_restored():
    judge = Judge(WINDOWS)
    critical, harmless = candidate(5, 1, 700.0, 1000.0), candidate(5, 2, 250.0, 1000.0)
    judge.plan_layer(3, [critical, harmless], _weight())
    effects = {(3, 5, 1): math.log(20.0), (3, 5, 2): 0.0}

    def effect(run: VariantRun) -> float:
        return effects.get(run.plan.candidates[0], 0.0) if run.plan.kind == Kind.ABLATE else 0.0

    assert drive(judge, effect) == 2  # the restore needs a second round
    judged = judge.judgements()
    assert judged[critical.key].state == "verified"
    assert judged[harmless.key].state == "rejected"
    for run in judge.runs:
        assert sorted(run.scores) == [0] and run.stopped_early == (run.plan.kind != Kind.RESTORE)
    restores = [r for r in judge.runs if r.plan.kind == Kind.RESTORE]
    assert [r.plan.candidates for r in restores] == [(critical.key,)]
    assert judged[harmless.key].restore is None
    assert judge.variant_tokens() == len(judge.runs) * PREDICTIONS


def test_a_borderline_weight_runs_to_the_end_and_stays_a_candidate():
    judge = Judge(WINDOWS)
    weight = candidate(5, 1, 700.0, 1000.0)
    judge.plan_layer(3, [weight], _weight())
    drive(judge, lambda run: math.log(2.0) if run.plan.kind == Kind.ABLATE else 0.0)
    judged = judge.judgements()[weight.key]
    assert judged.state == "candidate" and "straddles" in judged.reason
    assert sorted(judged.ablation.scores) == list(range(WINDOWS))
    assert not judged.ablation.stopped_early


def test_exhaustive_scores_every_variant_on_every_window_with_the_same_verdicts():
    verdicts = {}
    for sequential in (True, False):
        judge = Judge(WINDOWS, sequential=sequential)
        weights = [candidate(5, 1, 700.0, 1000.0), candidate(5, 2, 250.0, 1000.0)]
        judge.plan_layer(3, weights, _weight())
        drive(judge, lambda run: math.log(9.0) if run.plan.candidates[:1] == ((3, 5, 1),) else 0.0)
        verdicts[sequential] = {k: j.state for k, j in judge.judgements().items()}
        if not sequential:
            assert all(sorted(r.scores) == list(range(WINDOWS)) for r in judge.runs)
    assert verdicts[True] == verdicts[False] == {(3, 5, 1): "verified", (3, 5, 2): "rejected"}


def test_a_shadow_group_is_one_variant_and_is_split_only_when_it_matters():
    rows = [candidate(r, 9, 900.0, 1000.0) for r in (1, 2, 3)]
    # Not critical: one ablation rejects all three.
    judge = Judge(WINDOWS)
    judge.plan_layer(3, rows, _weight())
    drive(judge, lambda run: 0.0)
    ablations = [r for r in judge.runs if r.plan.kind == Kind.ABLATE]
    assert len(ablations) == 1 and len(ablations[0].plan.zeroed) == 3
    judged = judge.judgements()
    assert {j.state for j in judged.values()} == {"rejected"}
    assert all(len(j.zeroed_with) == 2 and "other rows" in j.reason for j in judged.values())
    # Critical only through row 2: the group verifies, then each row is ablated on its own.
    judge = Judge(WINDOWS)
    judge.plan_layer(3, rows, _weight())
    drive(
        judge,
        lambda run: (
            math.log(30.0)
            if (3, 2, 9) in run.plan.candidates and run.plan.kind == Kind.ABLATE
            else 0.0
        ),
    )
    judged = judge.judgements()
    assert {k: j.state for k, j in judged.items()} == {
        (3, 1, 9): "rejected",
        (3, 2, 9): "verified",
        (3, 3, 9): "rejected",
    }
    assert all(j.zeroed_with == [] for j in judged.values())


def test_a_fragile_tensor_rejects_its_candidates_as_soon_as_the_control_shows_it():
    judge = Judge(WINDOWS)
    weight = candidate(5, 1, 700.0, 1000.0)
    judge.plan_layer(3, [weight], _weight())
    drive(
        judge,
        lambda run: (
            math.log(2.0)
            if run.plan.kind == Kind.ABLATE
            else (math.log(1.5) if run.plan.kind == Kind.control("random") else 0.0)
        ),
    )
    judged = judge.judgements()[weight.key]
    assert judged.state == "rejected" and "too fragile" in judged.reason
    assert judged.ablation.stopped_early


# --- the details a mutation run showed untested (docs/mutation.md) ---------------------------


def test_candidates_beyond_the_bound_are_judged_as_skipped_and_the_rest_in_full():
    weights = [
        candidate(5, col, 1000.0 - col * 10, 1000.0) for col in range(MAX_ABLATIONS_PER_LAYER + 2)
    ]
    judge = Judge(WINDOWS)
    judge.plan_layer(3, weights, _weight())
    drive(judge, lambda run: 0.0)
    judged = judge.judgements()
    selection = judge.layers[(3, None)].selection
    ranked = MAX_ABLATIONS_PER_LAYER + 2
    for rank, weight in enumerate(weights, start=1):
        j = judged[weight.key]
        assert (j.candidate, j.spike_share, j.rank, j.ranked) == (
            weight,
            selection.shares[weight.key],
            rank,
            ranked,
        )
    skipped = judged[weights[-1].key]
    assert (skipped.state, skipped.reason, skipped.ablation) == ("candidate", "skipped", None)
    assert skipped.skipped == (
        f"not validated: its input channel ranks {ranked} of {ranked} in layer 3 by the share of "
        f"the spike it carries, beyond the {MAX_ABLATIONS_PER_LAYER} ablated per layer"
    )
    ablated = judged[weights[0].key]
    assert ablated.skipped is None and ablated.reason.startswith("zeroing it multiplies")
    assert ablated.controls == judge.layers[(3, None)].controls and set(ablated.controls) == {
        "random",
        "top_k",
    }
    assert ablated.control_intervals == {n: judge.interval(r) for n, r in ablated.controls.items()}


def test_a_budget_without_windows_plans_nothing_and_validates_nothing():
    judge = Judge(0)
    weight = candidate(5, 1, 700.0, 1000.0)
    assert judge.plan_layer(3, [weight], _weight()) == []
    assert judge.runs == [] and judge.pending() == []
    assert judge.advance() is False  # a round after nothing was scored: still nothing to do
    judged = judge.judgements()[weight.key]
    assert (judged.state, judged.reason) == (
        "candidate",
        "not validated: no evaluation window was scored",
    )
    assert judged.ablation is None and judged.ablation_interval is None


def test_a_layer_without_candidates_plans_nothing():
    judge = Judge(WINDOWS)
    assert judge.plan_layer(3, [], _weight()) == []
    assert judge.runs == []


def test_the_controls_follow_the_random_control_and_keep_their_thresholds():
    judge = Judge(WINDOWS)
    runs = judge.plan_layer(3, [candidate(5, 1, 700.0, 1000.0)], _weight())
    controls = judge.layers[(3, None)].controls
    assert runs == [judge.layers[(3, None)].units[1], controls["random"], controls["top_k"]]
    assert (controls["random"].leader, controls["random"].threshold) == (None, 1.05)
    assert (controls["top_k"].leader, controls["top_k"].threshold) == (controls["random"], None)


def test_a_restore_is_scored_on_the_windows_of_its_ablation_and_then_done():
    # Two windows to decide: the ablation is 2x-3x, the interval needs the second look.
    judge = Judge(WINDOWS)
    weight = candidate(5, 1, 700.0, 1000.0)
    judge.plan_layer(3, [weight], _weight())
    drive(judge, lambda run: math.log(2.5) if run.plan.kind == Kind.ABLATE else 0.0, seed=2)
    judged = judge.judgements()[weight.key]
    assert judged.restore is not None and judged.restore.done
    assert sorted(judged.restore.scores) == sorted(judged.ablation.scores)
    assert judged.restore.target == sorted(judged.ablation.scores)
    assert judged.restore in judge.runs and judge.pending() == []
    random, top_k = (
        judge.layers[(3, None)].controls["random"],
        judge.layers[(3, None)].controls["top_k"],
    )
    assert top_k.done and sorted(top_k.scores) == sorted(random.scores)
    assert top_k.stopped_early == random.stopped_early


def test_no_restore_where_zeroing_moved_perplexity_only_up_to_the_restore_level():
    judge = Judge(WINDOWS)
    weight = candidate(5, 1, 700.0, 1000.0)
    judge.plan_layer(3, [weight], _weight())
    layer = judge.layers[(3, None)]
    run = layer.units[1]
    low = math.log(RESTORE_MIN_RATIO)
    # A scored ablation whose interval's low end is exactly the restore level.
    diffs = [torch.full((BLOCK_TOKENS,), low, dtype=torch.float64) for _ in range(2)]
    run.differences = dict(enumerate(diffs))
    judge._maybe_restore(layer, weight, run)
    assert layer.restores == {}


def test_the_shadow_rows_ablated_one_by_one_keep_their_groups_place():
    rows = [candidate(r, 9, 900.0 - r, 1000.0, layer=3) for r in (1, 2, 3)]
    judge = Judge(WINDOWS)
    judge.plan_layer(3, rows, _weight())
    drive(
        judge,
        lambda run: (
            math.log(30.0)
            if (3, 2, 9) in run.plan.candidates and run.plan.kind == Kind.ABLATE
            else 0.0
        ),
    )
    group = judge.layers[(3, None)].selection.ablated[0]
    members = judge.layers[(3, None)].members
    assert set(members) == {r.key for r in rows}
    for row in rows:
        plan = members[row.key].plan
        assert (plan.layer, plan.zeroed, plan.candidates) == (3, [(row.row, 9)], (row.key,))
        assert members[row.key].threshold == 2.0
    assert group.is_group and group.rank == 1
    judged = judge.judgements()
    assert judged[(3, 2, 9)].restore is not None
    assert judged[(3, 1, 9)].restore is None and judged[(3, 3, 9)].restore is None


def test_what_every_variant_would_have_cost_on_the_whole_budget():
    judge = Judge(WINDOWS)
    judge.plan_layer(3, [candidate(5, 1, 700.0, 1000.0)], _weight())
    assert judge.exhaustive_variant_tokens(1000) == 3 * 1000


def _one_round(judge: Judge, effect, generator: torch.Generator) -> bool:
    """Compute what is pending once, as `drive` does, and advance; returns `advance`'s answer."""
    for run in judge.pending():
        for w in run.missing:
            base = 3.0 + torch.rand(PREDICTIONS, generator=generator)
            noise = ABLATION_NOISE * torch.randn(PREDICTIONS, generator=generator)
            judge.record(run, w, _scores(base + effect(run) + noise), _scores(base))
    return judge.advance()


def test_a_clear_weights_restore_is_planned_as_soon_as_it_is_decided_whatever_else_runs():
    borderline, clear = candidate(5, 1, 700.0, 1000.0), candidate(6, 2, 650.0, 1000.0)
    effects = {borderline.key: math.log(2.0), clear.key: math.log(20.0)}
    judge = Judge(WINDOWS)
    judge.plan_layer(3, [borderline, clear], _weight())
    assert [u.col for u in judge.layers[(3, None)].selection.ablated] == [
        1,
        2,
    ]  # the borderline first

    def effect(run: VariantRun) -> float:
        return effects.get(run.plan.candidates[0], 0.0) if run.plan.kind == Kind.ABLATE else 0.0

    assert _one_round(judge, effect, torch.Generator().manual_seed(0))  # work remains
    layer = judge.layers[(3, None)]
    assert not layer.units[1].done and layer.units[2].done
    assert set(layer.restores) == {clear.key}
    while judge.pending():
        more = _one_round(judge, effect, torch.Generator().manual_seed(1))
    assert more is False


def test_a_restore_runs_on_every_window_its_ablation_was_scored_on():
    judge = Judge(WINDOWS)
    weight = candidate(5, 1, 700.0, 1000.0)
    judge.plan_layer(3, [weight], _weight())
    ablation = judge.layers[(3, None)].units[1]
    base = torch.full((PREDICTIONS,), 3.0)
    for w in range(3):  # scored on three windows (more than its first look asked for)
        judge.record(ablation, w, _scores(base + math.log(3.0)), _scores(base))
    judge.advance()
    restore = judge.layers[(3, None)].restores[weight.key]
    assert restore.target == [0, 1, 2] and restore.missing == [0, 1, 2]
