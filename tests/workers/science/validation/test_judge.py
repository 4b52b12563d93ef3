"""The judge's bookkeeping, driven with per-token differences of known size instead of a model:
which variants run on which windows, when each stops, what follows, and the verdicts."""

import math

import torch

from tests.helpers import candidate
from workers.science.evaluation import TokenScores
from workers.science.validation.judge import Judge, VariantRun
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
    drive(judge, lambda run: math.log(30.0) if (3, 2, 9) in run.plan.candidates and run.plan.kind == Kind.ABLATE else 0.0)
    judged = judge.judgements()
    assert {k: j.state for k, j in judged.items()} == {
        (3, 1, 9): "rejected", (3, 2, 9): "verified", (3, 3, 9): "rejected",
    }
    assert all(j.zeroed_with == [] for j in judged.values())


def test_a_fragile_tensor_rejects_its_candidates_as_soon_as_the_control_shows_it():
    judge = Judge(WINDOWS)
    weight = candidate(5, 1, 700.0, 1000.0)
    judge.plan_layer(3, [weight], _weight())
    drive(judge, lambda run: math.log(2.0) if run.plan.kind == Kind.ABLATE else (
        math.log(1.5) if run.plan.kind == Kind.control("random") else 0.0))
    judged = judge.judgements()[weight.key]
    assert judged.state == "rejected" and "too fragile" in judged.reason
    assert judged.ablation.stopped_early
