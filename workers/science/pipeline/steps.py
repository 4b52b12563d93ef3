"""The steps of a job that do not depend on how activations reach each layer, shared by the
streamed sweep and the naive full-model path: opening the checkpoint and its tokenizer, the
prompts and evaluation windows, and the report. (What to run to judge the candidates, and the
verdicts, are the judge's: `workers.science.validation.judge`.)"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch
from transformers import AutoTokenizer

from workers.contract.report import Report
from workers.science.checkpoint import Checkpoint, fill_sha256, open_checkpoint
from workers.science.detection import DetectionState
from workers.science.errors import CheckpointRefused
from workers.science.evaluation import (
    DEFAULT_EVAL_TOKENS,
    EVAL_WINDOW_TOKENS,
    EvalText,
    Score,
    eval_windows,
)
from workers.science.report import Findings, build_report
from workers.science.validation.judge import Judge

# The detection prompts. The first is the one the published SmolLM2 profile was measured on
# (docs/measurements.md); the others vary topic, length and style so that a candidate's
# stability across prompts means something.
DEFAULT_PROMPTS = (
    "Apple Inc. is a worldwide tech company.",
    "The old lighthouse keeper climbed the stairs every evening to light the lamp.",
    "In 1905, Albert Einstein published four papers that changed physics forever.",
    "My favourite bread needs flour, water, salt and a little patience.",
)

Progress = Callable[[str, int, int], None]


@dataclass
class AnalysisOptions:
    device: str = "cpu"
    validate: bool = True
    prompts: list[str] | None = None
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    eval_text: Path | None = None
    # Stop scoring a variant as soon as its verdict cannot change (False: every variant is
    # scored on the whole budget, the exhaustive evaluation; the verdicts are the same).
    sequential: bool = True
    # Known sha256 per weight file name (Hub blobs are named by it): skips hashing those files.
    file_sha256: dict[str, str] | None = None

    def prompt_list(self) -> list[str]:
        return list(self.prompts or DEFAULT_PROMPTS)


@dataclass
class Clock:
    """Seconds spent on each part of the job."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, since: float) -> float:
        now = perf_counter()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - since
        return now

    def rounded(self) -> dict[str, float]:
        total = {**self.seconds, "total": sum(self.seconds.values())}
        return {k: round(v, 3) for k, v in total.items()}


def load_tokenizer(checkpoint: Checkpoint):
    try:
        return AutoTokenizer.from_pretrained(checkpoint.path, trust_remote_code=False)
    except Exception as exc:  # tokenizers fail in many ways; the user needs the one line
        raise CheckpointRefused(f"{checkpoint.path}: cannot load its tokenizer ({exc})") from None


def tokenize(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]], dtype=torch.long)


def open_for_analysis(model_dir: Path | str, options: AnalysisOptions, clock: Clock):
    """The checkpoint (refused if unusable, its files hashed) and its tokenizer."""
    started = perf_counter()
    checkpoint = open_checkpoint(model_dir)
    fill_sha256(checkpoint, options.file_sha256)
    clock.add("open_and_hash", started)
    return checkpoint, load_tokenizer(checkpoint)


def evaluation_windows(tokenizer, options: AnalysisOptions) -> tuple[EvalText, list[torch.Tensor]]:
    """The evaluation text and the token windows of it that are scored."""
    eval_text = EvalText.load(options.eval_text) if options.eval_text else EvalText.load()
    ids = tokenizer(eval_text.text)["input_ids"]
    return eval_text, eval_windows(ids, EVAL_WINDOW_TOKENS, options.eval_tokens)


@dataclass
class OpenedJob:
    """A checkpoint opened for analysis with everything both paths run on: its tokenizer, the
    prompts, the evaluation windows (none without validation), and the job's clock."""

    options: AnalysisOptions
    clock: Clock
    checkpoint: Checkpoint
    tokenizer: object
    prompts: list[str]
    eval_text: EvalText | None
    windows: list[torch.Tensor]

    def judge(self) -> Judge | None:
        """The judge of this job's candidates; None without validation."""
        if not self.options.validate:
            return None
        return Judge(len(self.windows), sequential=self.options.sequential)

    def report(
        self,
        state: DetectionState,
        judge: Judge | None,
        baseline: Score | None,
        *,
        tensor_names: dict[str, str],
        device: str,
        bytes_read: int,
        rounds: int,
    ) -> Report:
        return build_report(
            Findings(
                checkpoint=self.checkpoint,
                tensor_names=tensor_names,
                device=device,
                prompts=self.prompts,
                state=state,
                judge=judge,
                baseline=baseline,
                eval_text=self.eval_text,
                eval_windows=len(self.windows),
                eval_tokens=sum(int(w.numel()) for w in self.windows),
                timings=self.clock.rounded(),
                bytes_read=bytes_read,
                rounds=rounds,
            )
        )


def open_job(model_dir: Path | str, options: AnalysisOptions | None) -> OpenedJob:
    """Open the checkpoint (refused if unusable, its files hashed), its tokenizer, and what the
    job will run through the model."""
    options = options or AnalysisOptions()
    clock = Clock()
    checkpoint, tokenizer = open_for_analysis(model_dir, options, clock)
    eval_text, windows = evaluation_windows(tokenizer, options) if options.validate else (None, [])
    return OpenedJob(
        options, clock, checkpoint, tokenizer, options.prompt_list(), eval_text, windows
    )
