"""How many tokens a model can take in one sequence, read from its config.

Every sequence swreg runs (a detection prompt, an evaluation window) must fit the model: past its
position table a model indexes outside its position embeddings (GPT-2 with `n_positions` 256
fails with an IndexError). Only the position table caps a sequence. A sliding attention window
limits what one layer attends to, not how long a sequence the model takes: sequences longer
than the window are how such models run (gpt-oss's 128-token window, Gemma 3's local layers),
so the window is recorded (`workers.science.feed_forward.FeedForward.sliding_window`, the
report's `feed_forward.sliding_window`), never used as a cap or a reason to refuse.
"""

from typing import NamedTuple

from workers.science.errors import CheckpointRefused

# Config keys that hold the length of the position table, in the order transformers' own
# configs use them: most architectures, GPT-2, and GPT-2's older spelling.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")

# The shortest context swreg judges a model on. A super weight is judged by how much zeroing it
# moves perplexity, and a window's perplexity is mostly its opening positions, which see almost
# no context, until the window is a few dozen tokens long (docs/method.md#context-length gives the
# measurement on SmolLM2). 64 tokens is also what the longest default detection prompt needs on
# a byte-level tokenizer (80 characters): below it the prompts would be cut.
MIN_CONTEXT_TOKENS = 64


class ModelContext(NamedTuple):
    """The longest sequence swreg runs through a model, and the config key that set it."""

    tokens: int | None  # None: the config names no limit
    source: str | None  # e.g. "max_position_embeddings", "n_positions"


def _positive_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def model_context(config: dict) -> ModelContext:
    """The context cap of a (text) config: its position table (a sliding window is no cap)."""
    for key in POSITION_KEYS:
        if (tokens := _positive_int(config.get(key))) is not None:
            return ModelContext(tokens, key)
    return ModelContext(None, None)


def check_judgeable(context: ModelContext, where: str) -> None:
    """Refuse, in one line, a model whose context is too short to judge a super weight."""
    if context.tokens is not None and context.tokens < MIN_CONTEXT_TOKENS:
        raise CheckpointRefused(
            f"{where}: the model's context is {context.tokens} tokens ({context.source}), "
            f"shorter than the {MIN_CONTEXT_TOKENS} swreg needs to judge a super weight"
        )
