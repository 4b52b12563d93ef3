"""The whole job in one sweep of the weights: detection on a few prompts, and validation of
every candidate with its controls on the evaluation text.

Layers are streamed once, in order. Every input sequence passes each layer as the layer goes by:
the detection prompts, the evaluation text as the model is (the baseline), and each *variant*
(a candidate zeroed, its super activation restored, the controls). A variant is forked from the
baseline at the layer where its candidate's spike appears: the layers below see identical
inputs, so their work is shared, and no layer is read twice.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch
from transformers import AutoTokenizer

from workers.checkpoint import Checkpoint, fill_sha256, open_checkpoint
from workers.detection import Candidate, DetectionState, summarize
from workers.errors import CheckpointRefused
from workers.evaluation import (
    EVAL_WINDOW_TOKENS,
    Baseline,
    EvalText,
    Score,
    eval_windows,
    score_window,
    stop_word_ids,
)
from workers.report import build_report
from workers.streaming import LayerStreamer, SequenceCapture
from workers.validation import VariantPlan, applied, as_out_in, plan_variants, recording

# The detection prompts. The first is DESIGN.md's; the others vary topic, length and style so
# that a candidate's stability across prompts means something (the seeds' cross-validation).
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
    eval_tokens: int = EVAL_WINDOW_TOKENS
    eval_text: Path | None = None
    # Known sha256 per weight file name (Hub blobs are named by it): skips hashing those files.
    file_sha256: dict[str, str] | None = None


def load_tokenizer(checkpoint: Checkpoint):
    try:
        return AutoTokenizer.from_pretrained(checkpoint.path, trust_remote_code=False)
    except Exception as exc:  # tokenizers fail in many ways; the user needs the one line
        raise CheckpointRefused(f"{checkpoint.path}: cannot load its tokenizer ({exc})") from None


def tokenize(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]], dtype=torch.long)


@dataclass
class _Variant:
    plan: VariantPlan
    hidden: list[torch.Tensor]


@dataclass
class Clock:
    """Seconds spent on each part of the job."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, since: float) -> float:
        now = perf_counter()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - since
        return now


class Sweep:
    """One streamed pass over the layers carrying every sequence of the job."""

    def __init__(self, streamer: LayerStreamer, prompts: list[SequenceCapture], windows: list[SequenceCapture]):
        self.streamer = streamer
        self.architecture = streamer.architecture
        self.prompts = prompts
        self.windows = windows
        self.state = DetectionState(len(prompts))
        self.prompt_hidden = [c.embeddings for c in prompts]
        self.baseline_hidden = [c.embeddings for c in windows]
        self.variants: list[_Variant] = []
        self.clock = Clock()

    def run(self, progress: Progress | None = None) -> None:
        streamer = self.streamer
        for layer in range(streamer.num_layers):
            started = perf_counter()
            module = streamer.load_layer(layer)
            streamer.prefetch(layer + 1)
            started = self.clock.add("read_wait", started)
            down_proj = module.get_submodule(self.architecture.down_proj)
            candidates = self._detect(layer, down_proj)
            started = self.clock.add("detect", started)
            if self.windows:
                self._validate(layer, down_proj, candidates)
                self.clock.add("validate", started)
            streamer.release_layer(layer)
            if progress:
                progress("layers", layer + 1, streamer.num_layers)

    def _detect(self, layer: int, down_proj) -> list[Candidate]:
        activities = []
        with recording(down_proj, keep_inputs=True) as recorder:
            for i, capture in enumerate(self.prompts):
                self.prompt_hidden[i] = self.streamer.run_layer(layer, self.prompt_hidden[i], capture)
                activities.append(summarize(recorder.inputs, recorder.outputs))
        return self.state.observe_layer(layer, activities, as_out_in(down_proj.weight, self.architecture))

    def _validate(self, layer: int, down_proj, candidates: list[Candidate]) -> None:
        run = self.streamer.run_layer
        layer_inputs = list(self.baseline_hidden)
        baseline_outputs = []
        with recording(down_proj) as recorder:
            for w, capture in enumerate(self.windows):
                self.baseline_hidden[w] = run(layer, layer_inputs[w], capture)
                baseline_outputs.append(recorder.outputs)
        for variant in self.variants:
            for w, capture in enumerate(self.windows):
                variant.hidden[w] = run(layer, variant.hidden[w], capture)
        thresholds = {(c.row, c.col): c.threshold for c in candidates}
        weight = as_out_in(down_proj.weight, self.architecture)
        for plan in plan_variants(layer, list(thresholds), weight):
            threshold = thresholds.get(plan.candidate[1:]) if plan.candidate else None
            hidden = []
            for w, capture in enumerate(self.windows):
                with applied(plan, down_proj, self.architecture, baseline_outputs[w], threshold):
                    hidden.append(run(layer, layer_inputs[w], capture))
            self.variants.append(_Variant(plan, hidden))

    def score(self, tokenizer) -> tuple[Score, dict[str, Score]]:
        stop_ids = stop_word_ids(tokenizer)
        baseline = Score()
        scores = {v.plan.name: Score() for v in self.variants}
        for w, capture in enumerate(self.windows):
            logits = self.streamer.logits(capture, self.baseline_hidden[w])
            reference = Baseline.from_logits(logits)
            baseline.add(score_window(logits, reference, capture.input_ids, stop_ids))
            for variant in self.variants:
                logits = self.streamer.logits(capture, variant.hidden[w])
                scores[variant.plan.name].add(score_window(logits, reference, capture.input_ids, stop_ids))
        return baseline, scores


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


def analyse(model_dir: Path | str, options: AnalysisOptions | None = None, progress: Progress | None = None) -> dict:
    """Detect the super weights of a local checkpoint and, unless told not to, validate them."""
    options = options or AnalysisOptions()
    clock = Clock()
    checkpoint, tokenizer = open_for_analysis(model_dir, options, clock)
    started = perf_counter()
    streamer = LayerStreamer(checkpoint, options.device)
    try:
        prompts = list(options.prompts or DEFAULT_PROMPTS)
        prompt_captures = [streamer.capture(tokenize(tokenizer, p)) for p in prompts]
        eval_text, window_captures = None, []
        if options.validate:
            eval_text, windows = evaluation_windows(tokenizer, options)
            window_captures = [streamer.capture(w) for w in windows]
        started = clock.add("load", started)
        sweep = Sweep(streamer, prompt_captures, window_captures)
        sweep.run(progress)
        clock.seconds.update(sweep.clock.seconds)
        started = perf_counter()
        baseline, scores = sweep.score(tokenizer) if options.validate else (None, None)
        clock.add("score", started)
    finally:
        streamer.close()
    clock.seconds["total"] = sum(clock.seconds.values())
    return build_report(
        checkpoint=checkpoint,
        tensor_names=streamer.names,
        device=str(streamer.device),
        prompts=prompts,
        state=sweep.state,
        plans=[v.plan for v in sweep.variants],
        scores=scores,
        baseline=baseline,
        eval_text=eval_text,
        eval_windows=len(window_captures),
        timings={k: round(v, 3) for k, v in clock.seconds.items()},
        bytes_read=streamer.bytes_read,
    )
