"""Did you mean: the known names closest to a mistyped one (a command, a model id), for the
one-line errors that refuse it."""

import difflib
from collections.abc import Iterable

# How alike two names must be (difflib's ratio) to be offered; and how many are offered.
CUTOFF = 0.6
MAX_SUGGESTIONS = 3
# Offered beside the best match only when about as alike (difflib ratio within this).
CLOSE_TO_BEST = 0.02


def close_matches(word: str, known: Iterable[str]) -> list[str]:
    """The known names closest to `word`, best first: those nearly as alike as the best one
    (within CLOSE_TO_BEST), so that a clear match is offered alone. Compared without case, and
    a model id also by its name alone, so that `llama-7b` finds `huggyllama/llama-7b`."""
    target = word.lower()
    best: dict[str, float] = {}
    for name in known:
        if name == word:
            continue
        keys = {name.lower(), name.rsplit("/", 1)[-1].lower()}
        score = max(difflib.SequenceMatcher(None, target, key).ratio() for key in keys)
        if score >= CUTOFF:
            best[name] = max(score, best.get(name, 0.0))
    if not best:
        return []
    top = max(best.values())
    ranked = sorted(
        (n for n, r in best.items() if r >= top - CLOSE_TO_BEST), key=lambda n: (-best[n], n)
    )
    return ranked[:MAX_SUGGESTIONS]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`; did you mean X?` (or `X or Y?`) to end an error line with; empty when nothing is
    close."""
    found = close_matches(word, known)
    if not found:
        return ""
    return "; did you mean " + " or ".join(found) + "?"
