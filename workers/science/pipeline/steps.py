"""The steps of a job that do not depend on how activations reach each layer, shared by the
streamed sweep and the naive full-model path: opening the checkpoint and its tokenizer, the
prompts and evaluation windows, and the report. (What to run to judge the candidates, and the
verdicts, are the judge's: `workers.science.validation.judge`.)"""

from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch
from transformers import AutoTokenizer

from workers.contract.progress import LOAD_STEPS, Progress
from workers.contract.report import Report
from workers.science.checkpoint import Checkpoint, fill_sha256, open_checkpoint
from workers.science.context import ModelContext, check_judgeable, model_context
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


@dataclass
class AnalysisOptions:
    device: str = "cpu"
    validate: bool = True
    prompts: list[str] | None = None
    # Tokens of the evaluation text scored (at most: a variant whose verdict is clear earlier
    # stops earlier), in windows of at most EVAL_WINDOW_TOKENS and at most the model's context;
    # exactly this many under the exhaustive evaluation, unless the text is shorter.
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


def text_prefix(tokenizer) -> list[int]:
    """The tokens the tokenizer puts before any text it encodes (a BOS token, or nothing)."""
    probe = "The"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def fit_prompts(
    tokenizer, prompts: list[str], context: ModelContext
) -> tuple[list[str], list[torch.Tensor]]:
    """Each prompt as the model runs it: tokenized, and cut to the model's context. A prompt that
    was cut is recorded as the text of the tokens that ran."""
    texts, ids = [], []
    for prompt in prompts:
        tokens = tokenize(tokenizer, prompt)
        if context.tokens is not None and tokens.shape[1] > context.tokens:
            tokens = tokens[:, : context.tokens]
            prompt = tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True)
        texts.append(prompt)
        ids.append(tokens)
    return texts, ids


def report_progress(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def open_for_analysis(
    model_dir: Path | str, options: AnalysisOptions, clock: Clock, progress: Progress | None = None
):
    """The checkpoint (refused if unusable or if its context is too short to judge, before its
    files are hashed), its context and its tokenizer."""
    started = perf_counter()
    report_progress(progress, "load", 0, LOAD_STEPS)
    checkpoint = open_checkpoint(model_dir)
    context = model_context(checkpoint.text_config())
    check_judgeable(context, str(checkpoint.path))
    fill_sha256(checkpoint, options.file_sha256)
    clock.add("open_and_hash", started)
    report_progress(progress, "load", 1, LOAD_STEPS)
    tokenizer = load_tokenizer(checkpoint)
    report_progress(progress, "load", 2, LOAD_STEPS)
    return checkpoint, context, tokenizer


def window_length(context: ModelContext) -> int:
    """Evaluation windows are EVAL_WINDOW_TOKENS long, or the model's context if shorter."""
    return min(EVAL_WINDOW_TOKENS, context.tokens or EVAL_WINDOW_TOKENS)


def evaluation_windows(
    tokenizer, options: AnalysisOptions, context: ModelContext
) -> tuple[EvalText, list[torch.Tensor]]:
    """The evaluation text and the token windows of it that are scored."""
    eval_text = EvalText.load(options.eval_text) if options.eval_text else EvalText.load()
    ids = tokenizer(eval_text.text, add_special_tokens=False)["input_ids"]
    return eval_text, eval_windows(
        ids, window_length(context), options.eval_tokens, prefix=text_prefix(tokenizer)
    )


@dataclass
class OpenedJob:
    """A checkpoint opened for analysis with everything both paths run on: its tokenizer, the
    prompts, the evaluation windows (none without validation), and the job's clock."""

    options: AnalysisOptions
    clock: Clock
    checkpoint: Checkpoint
    tokenizer: object
    context: ModelContext
    prompts: list[str]  # as they ran: cut to the context
    prompt_ids: list[torch.Tensor]
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
        expert_tensors: dict[str, tuple[str, ...]] | None = None,
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
                window_tokens=max((w.shape[1] for w in self.windows), default=0),
                context=self.context,
                timings=self.clock.rounded(),
                bytes_read=bytes_read,
                rounds=rounds,
                expert_tensors=expert_tensors or {},
            )
        )


def open_job(
    model_dir: Path | str, options: AnalysisOptions | None, progress: Progress | None = None
) -> OpenedJob:
    """Open the checkpoint (refused if unusable or if its context is too short to judge, its
    files hashed), its tokenizer, and what the job will run through the model, cut to fit it
    (load steps 1 to 3 of LOAD_STEPS)."""
    options = options or AnalysisOptions()
    clock = Clock()
    checkpoint, context, tokenizer = open_for_analysis(model_dir, options, clock, progress)
    prompts, prompt_ids = fit_prompts(tokenizer, options.prompt_list(), context)
    eval_text, windows = (
        evaluation_windows(tokenizer, options, context) if options.validate else (None, [])
    )
    report_progress(progress, "load", 3, LOAD_STEPS)
    return OpenedJob(
        options, clock, checkpoint, tokenizer, context, prompts, prompt_ids, eval_text, windows
    )
