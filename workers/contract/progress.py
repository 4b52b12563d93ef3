"""How an analysis tells a person how far it is: `progress(stage, done, total)`, `done` out of
`total` units of a named stage's work.

The science calls it (`workers.science.pipeline`); `swreg detect` draws it, the worker writes it
to the job. A stage may still be reported while a later one runs (the streamed sweep detects and
validates each layer as it goes by), so a consumer keeps one count per stage.
"""

from collections.abc import Callable

# The analysis's stages, in the order they start.
STAGES = ("load", "detect", "validate", "score")
# A worker's job: its checkpoint fetched first, then the analysis.
JOB_STAGES = ("fetch", *STAGES)

# The load stage's steps: the checkpoint opened and hashed, its tokenizer, the evaluation
# windows, the model (its skeleton and embeddings, or the whole model on the naive path).
LOAD_STEPS = 4

Progress = Callable[[str, int, int], None]
