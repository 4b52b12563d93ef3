"""Scoring a model run on the evaluation text: perplexity, divergence from the baseline, and
the probability given to English stop words. Pure functions over logits."""

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workers.contract.resources import EVAL_TEXT_PATH

# The window length and the default budget live in a module without torch (help texts read them).
from workers.science.evaluation_defaults import DEFAULT_EVAL_TOKENS as DEFAULT_EVAL_TOKENS
from workers.science.evaluation_defaults import EVAL_WINDOW_TOKENS as EVAL_WINDOW_TOKENS

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
class TokenScores:
    """Per predicted position of one window: the variant's negative log-likelihood of the next
    token, KL(baseline || variant) of the next-token distributions, and the probability given to
    stop words. All float32, from one log-softmax per row."""

    nll: torch.Tensor
    kl: torch.Tensor
    stop_mass: torch.Tensor

    @classmethod
    def cat(cls, parts: list["TokenScores"]) -> "TokenScores":
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("nll", "kl", "stop_mass")))


@dataclass
class WindowScore:
    nll_sum: float
    tokens: int
    kl_sum: float
    stop_word_mass_sum: float

    @classmethod
    def of(cls, scores: TokenScores) -> "WindowScore":
        return cls(
            float(scores.nll.double().sum()),
            int(scores.nll.numel()),
            float(scores.kl.double().sum()),
            float(scores.stop_mass.double().sum()),
        )


@dataclass
class Score:
    """Scores summed over the windows a run was scored on."""

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


def next_token_targets(input_ids: torch.Tensor) -> torch.Tensor:
    """The token each position predicts: every token but the first, [T-1]."""
    return input_ids.reshape(-1)[1:]


@dataclass
class BaselineRows:
    """The unablated model's next-token distribution on some rows of a window, kept while the
    variants' same rows are scored against it."""

    probs: torch.Tensor  # [n, V] float32
    neg_entropy: torch.Tensor  # [n]: sum_v p log p

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> "BaselineRows":
        log_p = torch.log_softmax(logits.float(), dim=-1)
        probs = log_p.exp()
        return cls(probs, torch.linalg.vecdot(probs, log_p))


def token_scores(
    logits: torch.Tensor,
    targets: torch.Tensor,
    stop_ids: torch.Tensor,
    baseline: BaselineRows | None = None,
) -> TokenScores:
    """Score rows of next-token logits [n, V] against their targets [n].

    One log-softmax per row gives everything: the NLL is its entry at the target, the stop-word
    probability the exponentials of its stop-word entries, and KL(baseline || variant) =
    sum p_b log p_b - sum p_b log p_v. Computed in float32 whatever the model's dtype (the
    verdict compares NLLs that differ by little), and KL, which rounding can push a hair below
    zero for an unchanged distribution, is clamped at 0.
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    targets = targets.to(log_p.device)
    nll = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
    stop_mass = log_p[:, stop_ids.to(log_p.device)].exp().sum(dim=-1)
    if baseline is None:
        kl = torch.zeros_like(nll)
    else:
        kl = (baseline.neg_entropy - torch.linalg.vecdot(baseline.probs, log_p)).clamp_min(0.0)
    return TokenScores(nll.cpu(), kl.cpu(), stop_mass.cpu())


def baseline_scores(
    logits: torch.Tensor, targets: torch.Tensor, stop_ids: torch.Tensor
) -> tuple[BaselineRows, TokenScores]:
    """The baseline's own scores and the distribution the variants are compared with, from one
    log-softmax per row."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    probs = log_p.exp()
    targets = targets.to(log_p.device)
    nll = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
    stop_mass = probs[:, stop_ids.to(log_p.device)].sum(dim=-1)
    rows = BaselineRows(probs, torch.linalg.vecdot(probs, log_p))
    return rows, TokenScores(nll.cpu(), torch.zeros_like(nll).cpu(), stop_mass.cpu())


class Scoring:
    """Runs scored window by window against the baseline of the same window: every window's
    logits whole ([1, T, V]), each run summed into a Score. What the quantization check (every
    setting on every window) and tests that score a loaded model need; the validation's judge
    keeps per-token records instead (validation/judge.py)."""

    def __init__(self, stop_ids: torch.Tensor):
        self.stop_ids = stop_ids
        self.baseline = Score()
        self.scores: dict[str, Score] = {}
        self._baselines: dict[int, BaselineRows] = {}
        self._own: dict[int, TokenScores] = {}
        # run -> per window, its per-token loss minus the baseline's (the ratio's interval)
        self.differences: dict[str, list[torch.Tensor]] = {}

    @staticmethod
    def _rows(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits that predict a following token, [T-1, V], and those tokens."""
        return logits.reshape(-1, logits.shape[-1])[:-1], next_token_targets(input_ids)

    def add_baseline(self, window: int, logits: torch.Tensor, input_ids: torch.Tensor) -> None:
        rows, own = baseline_scores(*self._rows(logits, input_ids), self.stop_ids)
        self._baselines[window] = rows
        self._own[window] = own
        self.baseline.add(WindowScore.of(own))

    def add(self, name: str, window: int, logits: torch.Tensor, input_ids: torch.Tensor) -> None:
        scores = token_scores(
            *self._rows(logits, input_ids), self.stop_ids, self._baselines[window]
        )
        self.scores.setdefault(name, Score()).add(WindowScore.of(scores))
        self.differences.setdefault(name, []).append(
            scores.nll.double() - self._own[window].nll.double()
        )
