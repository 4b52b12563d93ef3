"""The evaluation's defaults, in a module that imports nothing (no torch): the command-line help
texts and `swreg bench` format them, and `workers.science.evaluation` uses them."""

# Perplexity is measured on windows of this many tokens, each read by the model on its own (its
# context). A window is also the step of the sequential evaluation (validation/statistics.py):
# short windows let a clear verdict stop early, and 256 tokens of context still give SmolLM2 a
# perplexity close to the one of 1,024-token windows (docs/measurements.md#validation).
EVAL_WINDOW_TOKENS = 256
# Tokens of the evaluation text scored by default (at most; a variant whose verdict is clear
# earlier stops earlier): as many as in the first SmolLM2 figures (docs/measurements.md).
DEFAULT_EVAL_TOKENS = 1024


def eval_tokens_help(what: str) -> str:
    """The `--eval-tokens` help sentence's end: windows and the default, from the constants."""
    return (
        f"{what}in windows of at most {EVAL_WINDOW_TOKENS} tokens and at most the model's context "
        f"(default: {DEFAULT_EVAL_TOKENS:,})."
    )
