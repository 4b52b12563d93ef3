"""Scoring a model run on the evaluation text: perplexity, divergence from the baseline, and
the probability given to English stop words. Pure functions over logits."""

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workers.contract.resources import EVAL_TEXT_PATH

# Perplexity is measured on windows of this many tokens, as in the published SmolLM2 figures
# (docs/measurements.md: 1,024 tokens).
EVAL_WINDOW_TOKENS = 1024

# Common English function words. The paper reports that removing a super weight shifts the
# next-token distribution toward such words; we report the mass the model puts on them.
STOP_WORDS = tuple(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves""".split()
)


@dataclass
class EvalText:
    path: Path
    text: str
    sha256: str

    @classmethod
    def load(cls, path: Path = EVAL_TEXT_PATH) -> "EvalText":
        data = path.read_bytes()
        return cls(path=path, text=data.decode("utf-8"), sha256=hashlib.sha256(data).hexdigest())


def eval_windows(
    text_ids: list[int], window: int, max_tokens: int, prefix: list[int] | tuple[int, ...] = ()
) -> list[torch.Tensor]:
    """Consecutive windows of the text that hold `max_tokens` tokens in all (all of the text if
    it is shorter), each at most `window` tokens long and each starting with `prefix`.

    `text_ids` is the text without the tokens a tokenizer adds around it; `prefix` is what it puts
    before any text (a BOS token, or nothing), so every window begins as a document begins, like
    every prompt. The last window holds what is left and may be shorter; a window needs two
    tokens to predict one.
    """
    prefix = list(prefix)
    room = window - len(prefix)
    if room < 1:
        raise ValueError(f"a {window}-token window cannot hold the {len(prefix)}-token prefix")
    windows, start, left = [], 0, max_tokens
    while start < len(text_ids):
        take = min(room, left - len(prefix), len(text_ids) - start)
        if len(prefix) + take < 2 or take < 1:
            break
        windows.append(torch.tensor([prefix + text_ids[start : start + take]], dtype=torch.long))
        start, left = start + take, left - len(prefix) - take
    return windows


def stop_word_ids(tokenizer) -> torch.Tensor:
    """Vocabulary ids that are a whole stop word on their own (with or without a leading space,
    capitalised or not)."""
    ids: set[int] = set()
    for word in STOP_WORDS:
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            encoded = tokenizer.encode(form, add_special_tokens=False)
            if len(encoded) == 1:
                ids.add(encoded[0])
    return torch.tensor(sorted(ids), dtype=torch.long)


@dataclass
class WindowScore:
    nll_sum: float
    tokens: int
    kl_sum: float
    stop_word_mass_sum: float


@dataclass
class Score:
    """Scores summed over all windows of one variant."""

    windows: list[WindowScore] = field(default_factory=list)

    def add(self, window: WindowScore) -> None:
        self.windows.append(window)

    @property
    def tokens(self) -> int:
        return sum(w.tokens for w in self.windows)

    @property
    def perplexity(self) -> float:
        return math.exp(sum(w.nll_sum for w in self.windows) / self.tokens)

    @property
    def mean_kl(self) -> float:
        return sum(w.kl_sum for w in self.windows) / self.tokens

    @property
    def stop_word_mass(self) -> float:
        return sum(w.stop_word_mass_sum for w in self.windows) / self.tokens

    def as_dict(self) -> dict:
        return {
            "perplexity": self.perplexity,
            "mean_kl_from_baseline": self.mean_kl,
            "stop_word_probability": self.stop_word_mass,
            "tokens": self.tokens,
        }


@dataclass
class Baseline:
    """The unablated model's next-token distribution on one window, kept to measure how far
    each variant moves from it."""

    probs: torch.Tensor  # [T-1, V]
    neg_entropy: torch.Tensor  # [T-1]: sum_v p log p

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> "Baseline":
        log_p = torch.log_softmax(_next_token_logits(logits), dim=-1)
        probs = log_p.exp()
        return cls(probs=probs, neg_entropy=torch.linalg.vecdot(probs, log_p))


def _next_token_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits that predict a following token: every position but the last, [T-1, V] float32."""
    return logits.reshape(-1, logits.shape[-1])[:-1].float()


def score_window(
    logits: torch.Tensor, baseline: Baseline, input_ids: torch.Tensor, stop_ids: torch.Tensor
) -> WindowScore:
    """Negative log-likelihood, KL(baseline || variant) and stop-word probability, summed over
    the window's positions.

    Written with one log-sum-exp per position instead of materialising the variant's
    log-probabilities: KL = sum p_b log p_b - sum p_b z + logsumexp(z), since sum p_b = 1.
    This is most of the scoring cost, paid once per variant and window.
    """
    z = _next_token_logits(logits)
    targets = input_ids.reshape(-1)[1:].to(z.device)
    lse = torch.logsumexp(z, dim=-1)
    nll = (lse - z.gather(1, targets.unsqueeze(1)).squeeze(1)).sum()
    kl = (baseline.neg_entropy - torch.linalg.vecdot(baseline.probs, z) + lse).sum()
    stop_mass = torch.exp(z[:, stop_ids.to(z.device)] - lse.unsqueeze(1)).sum()
    return WindowScore(float(nll), int(targets.numel()), float(kl), float(stop_mass))
