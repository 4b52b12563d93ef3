"""Scoring rows of logits: one log-softmax per row gives the NLL, the stop-word probability and
the KL divergence from the baseline; the KL is never negative, even where rounding would make a
distribution that barely moved come out a hair below zero."""

import torch

from workers.science.evaluation import BaselineRows, baseline_scores, token_scores

VOCAB = 5000


def test_scores_agree_with_their_definitions():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(64, VOCAB, generator=generator) * 4
    variant = base + torch.randn(64, VOCAB, generator=generator)
    targets = torch.randint(VOCAB, (64,), generator=generator)
    stop_ids = torch.tensor([3, 17, 4999])
    rows, own = baseline_scores(base, targets, stop_ids)
    scores = token_scores(variant, targets, stop_ids, rows)
    log_p, log_b = torch.log_softmax(variant.double(), -1), torch.log_softmax(base.double(), -1)
    expected_kl = (log_b.exp() * (log_b - log_p)).sum(-1)
    assert torch.allclose(scores.kl.double(), expected_kl, atol=1e-4)
    assert torch.allclose(scores.nll.double(), -log_p.gather(1, targets[:, None])[:, 0], atol=1e-4)
    assert torch.allclose(scores.stop_mass.double(), log_p[:, stop_ids].exp().sum(-1), atol=1e-6)
    assert torch.allclose(own.nll.double(), -log_b.gather(1, targets[:, None])[:, 0], atol=1e-4)
    assert torch.equal(own.kl, torch.zeros(64))


def test_kl_is_clamped_at_zero():
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(512, VOCAB, generator=generator) * 20
    # A distribution that barely moved: its true KL is ~1e-14, below float32's resolution.
    variant = base + 1e-6 * torch.randn(512, VOCAB, generator=generator)
    rows = BaselineRows.from_logits(base)
    kl = token_scores(variant, torch.zeros(512, dtype=torch.long), torch.tensor([0]), rows).kl
    unclamped = rows.neg_entropy - torch.linalg.vecdot(rows.probs, torch.log_softmax(variant, -1))
    assert unclamped.min() < 0  # what rounding alone gives
    assert kl.min() >= 0
