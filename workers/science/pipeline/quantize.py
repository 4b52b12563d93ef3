"""The quantization check in one sweep of the weights: the model as it is (the baseline) and the
model under every quantization setting (`workers.science.quantization`), scored on the
evaluation text.

Layers are streamed once, in order, as in the detection job (`LayerStreamer`: two layers, the
embeddings and the activations in memory). Each setting carries its own hidden states of the
evaluation windows; as a layer goes by, the setting's quantized copy of each of that layer's
weight matrices is swapped in, the setting's hidden states pass the layer, and the original
weights are put back for the next setting.

Mixture-of-experts layers hold their routed experts in fused 3-D parameters (transformers 5:
`experts.gate_up_proj`, `experts.down_proj`, `[experts, out, in]`, or `[experts, in, out]` where
the experts module says `is_transposed`): each expert's matrix is quantized on its own, with its
own clipping threshold, as a per-expert checkpoint would be, and a super weight inside an expert
is kept at (expert, row, col).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Literal

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from workers.contract.progress import LOAD_STEPS
from workers.contract.quantization import (
    ClipRuleInfo,
    KeptFrom,
    KeptWeight,
    QuantizationCheck,
    QuantizedScore,
)
from workers.contract.report import EvalInfo, RatioInterval
from workers.contract.report import Score as ScoreOut
from workers.science.checkpoint import Checkpoint
from workers.science.evaluation import DEFAULT_EVAL_TOKENS, Scoring, stop_word_ids
from workers.science.pipeline.steps import (
    AnalysisOptions,
    Clock,
    Progress,
    evaluation_windows,
    open_for_analysis,
)
from workers.science.quantization import (
    DEFAULT_BITS,
    DEFAULT_BLOCKS,
    ClipRule,
    Setting,
    Variant,
    clip_threshold,
    quantized,
    settings_grid,
)
from workers.science.report import code_version, display_path
from workers.science.streaming import LayerStreamer, SequenceCapture
from workers.science.validation.statistics import interval

METHOD = (
    "weight-only round-to-nearest, symmetric integer levels -(2^(bits-1)-1) .. 2^(bits-1)-1, one "
    "scale per block of input channels (its largest |w|), dequantized before use"
)
Weights = Literal["all", "down_proj"]  # which matrices are quantized (the contract's choices)
ALL_WEIGHTS: Weights = "all"
DOWN_PROJ_ONLY: Weights = "down_proj"
# The progress stage this sweep reports (the pipeline's callback: stage, done, total).
STAGE = "quantize"


@dataclass
class QuantizeOptions:
    device: str = "cpu"
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    eval_text: Path | None = None
    bits: tuple[int, ...] = DEFAULT_BITS
    blocks: tuple[int | None, ...] = DEFAULT_BLOCKS
    variants: tuple[Variant, ...] = tuple(Variant)
    clip_rule: ClipRule = field(default_factory=ClipRule)
    weights: Weights = ALL_WEIGHTS
    # Known sha256 per weight file name (Hub blobs are named by it): skips hashing those files.
    file_sha256: dict[str, str] | None = None

    def settings(self) -> list[Setting]:
        return settings_grid(self.bits, self.blocks, self.variants)


# The fused parameters transformers 5 holds a layer's routed experts in, and the down projection's.
EXPERT_PARAMETERS = ("gate_up_proj", "down_proj")
EXPERT_DOWN_PROJ = "down_proj"
EXPERTS_RANK = 3
# Where a layer's kept weights are: (path of the matrix inside the layer, routed expert or None).
KeepKey = tuple[str, int | None]


@dataclass(frozen=True)
class Matrix:
    """One weight matrix of a decoder layer, or one fused tensor of all routed experts (each
    expert's matrix quantized on its own): where it is and how it is stored."""

    module: str  # path inside the decoder layer, e.g. "mlp.down_proj", "mlp.experts.down_proj"
    linear: nn.Module  # the module holding the parameter
    transposed: bool  # stored [in, out]: Conv1D, and experts modules that say is_transposed
    parameter: str = "weight"
    experts: bool = False  # a fused [experts, ., .] tensor

    def out_in(self) -> torch.Tensor:
        """[out, in], or [experts, out, in]: a view of the parameter."""
        weight = getattr(self.linear, self.parameter)
        if not self.transposed:
            return weight
        return weight.transpose(1, 2) if self.experts else weight.t()

    @property
    def count(self) -> int:
        """Matrices quantized: one per routed expert in a fused tensor."""
        return getattr(self.linear, self.parameter).shape[0] if self.experts else 1


def _expert_matrices(name: str, module: nn.Module, weights: str) -> list[Matrix]:
    found = []
    for parameter in EXPERT_PARAMETERS:
        tensor = module._parameters.get(parameter)
        if tensor is None or tensor.dim() != EXPERTS_RANK:
            continue
        if weights == DOWN_PROJ_ONLY and parameter != EXPERT_DOWN_PROJ:
            continue
        transposed = bool(getattr(module, "is_transposed", False))
        path = f"{name}.{parameter}" if name else parameter
        found.append(Matrix(path, module, transposed, parameter, experts=True))
    return found


def layer_matrices(layer: nn.Module, weights: str, down_proj: str | None) -> list[Matrix]:
    """The weight matrices of a decoder layer that the check quantizes: every nn.Linear and
    Conv1D weight (attention and MLP projections) and every fused tensor of routed experts, or
    only the down projections (the dense one and the experts'; none in a layer without a
    feed-forward block)."""
    found = []
    for name, module in layer.named_modules():
        if not isinstance(module, nn.Linear | Conv1D):
            found.extend(_expert_matrices(name, module, weights))
            continue
        if weights == DOWN_PROJ_ONLY and name != down_proj:
            continue
        found.append(Matrix(name, module, isinstance(module, Conv1D)))
    return found


class LayerVariants:
    """A decoder layer's matrices with their original values, and the quantized copies that one
    setting puts in their place."""

    def __init__(
        self, matrices: list[Matrix], keep: dict[KeepKey, list[tuple[int, int]]], rule: ClipRule
    ):
        self.matrices = matrices
        self.keep = keep
        # Contiguous copies: a transposed view ([in, out] storage) cannot be cut into blocks.
        self.originals = [
            m.out_in().detach().clone(memory_format=torch.contiguous_format) for m in matrices
        ]
        # One threshold per matrix (per expert in a fused tensor), shared by every clipping setting.
        self.thresholds = [
            [clip_threshold(e, rule) for e in w] if m.experts else clip_threshold(w, rule)
            for m, w in zip(matrices, self.originals, strict=True)
        ]

    def apply(self, setting: Setting) -> None:
        for matrix, original, threshold in zip(
            self.matrices, self.originals, self.thresholds, strict=True
        ):
            target = matrix.out_in()
            with torch.no_grad():
                if not matrix.experts:
                    assert isinstance(threshold, float)  # one per matrix
                    target.copy_(
                        quantized(
                            original, setting, self.keep.get((matrix.module, None), []), threshold
                        )
                    )
                    continue
                assert isinstance(threshold, list)  # one per expert
                for expert, (weights, limit) in enumerate(zip(original, threshold, strict=True)):
                    kept = self.keep.get((matrix.module, expert), [])
                    target[expert].copy_(quantized(weights, setting, kept, limit))

    def restore(self) -> None:
        with torch.no_grad():
            for matrix, original in zip(self.matrices, self.originals, strict=True):
                matrix.out_in().copy_(original)


class QuantizationSweep:
    """One streamed pass over the layers carrying the baseline and every setting."""

    def __init__(
        self,
        streamer: LayerStreamer,
        windows: list[SequenceCapture],
        settings: list[Setting],
        keep: list[KeptWeight],
        options: QuantizeOptions,
    ):
        self.streamer = streamer
        self.windows = windows
        self.settings = settings
        self.options = options
        self.keep: dict[int, dict[KeepKey, list[tuple[int, int]]]] = {}
        for weight in keep:
            self.keep.setdefault(weight.layer, {}).setdefault(
                (weight.module, weight.expert), []
            ).append((weight.row, weight.col))
        self.baseline_hidden = [c.embeddings for c in windows]
        self.hidden = {s.name: [c.embeddings for c in windows] for s in settings}
        self.matrices = 0
        self.clock = Clock()

    def run(self, progress: Progress | None = None) -> None:
        streamer = self.streamer
        for layer in range(streamer.num_layers):
            started = perf_counter()
            module = streamer.load_layer(layer)
            streamer.prefetch(layer + 1)
            started = self.clock.add("read_wait", started)
            site = streamer.feed_forward.dense_site(layer)
            matrices = layer_matrices(module, self.options.weights, site.module if site else None)
            self.matrices += sum(m.count for m in matrices)
            variants = LayerVariants(matrices, self.keep.get(layer, {}), self.options.clip_rule)
            for w, capture in enumerate(self.windows):
                self.baseline_hidden[w] = streamer.run_layer(
                    layer, self.baseline_hidden[w], capture
                )
            for setting in self.settings:
                variants.apply(setting)
                hidden = self.hidden[setting.name]
                for w, capture in enumerate(self.windows):
                    hidden[w] = streamer.run_layer(layer, hidden[w], capture)
            variants.restore()
            streamer.release_layer(layer)
            self.clock.add("quantize", started)
            if progress:
                progress(STAGE, layer + 1, streamer.num_layers)

    def score(self, tokenizer) -> Scoring:
        scoring = Scoring(stop_word_ids(tokenizer))
        for w, capture in enumerate(self.windows):
            scoring.add_baseline(w, self.streamer.head(self.baseline_hidden[w]), capture.input_ids)
            for setting in self.settings:
                logits = self.streamer.head(self.hidden[setting.name][w])
                scoring.add(setting.name, w, logits, capture.input_ids)
        return scoring


def _ratio_interval(differences: list[torch.Tensor]) -> RatioInterval:
    """The perplexity ratio's confidence interval over the evaluation's blocks of tokens, as a
    validation verdict's (one look: every setting is scored on the whole budget)."""
    found = interval(differences, looks=1)
    return RatioInterval(
        low=found.ratio_low, high=found.ratio_high, confidence=found.confidence, blocks=found.blocks
    )


@dataclass
class ToKeep:
    """The super weights the `clip_keep` settings keep, and where they came from."""

    weights: list[KeptWeight]
    source: KeptFrom


def quantize_check(
    model_dir: Path | str,
    keep: ToKeep | Callable[[Checkpoint], ToKeep],
    options: QuantizeOptions | None = None,
    progress: Progress | None = None,
) -> QuantizationCheck:
    """Score the checkpoint under every quantization setting of `options`, with `keep` (the
    super weights, or a function of the opened and hashed checkpoint that finds them) kept in
    full precision by the `clip_keep` settings."""
    options = options or QuantizeOptions()
    clock = Clock()
    analysis = AnalysisOptions(
        device=options.device,
        eval_tokens=options.eval_tokens,
        eval_text=options.eval_text,
        file_sha256=options.file_sha256,
    )
    checkpoint, context, tokenizer = open_for_analysis(model_dir, analysis, clock, progress)
    # Finding the weights to keep may run a whole detection (its own stages, reported too).
    kept = keep(checkpoint) if callable(keep) else keep
    eval_text, window_ids = evaluation_windows(tokenizer, analysis, context)
    started = perf_counter()
    streamer = LayerStreamer(checkpoint, options.device)
    try:
        windows = [streamer.capture(w) for w in window_ids]
        clock.add("load", started)
        if progress:
            progress("load", LOAD_STEPS, LOAD_STEPS)
        sweep = QuantizationSweep(streamer, windows, options.settings(), kept.weights, options)
        sweep.run(progress)
        clock.seconds.update(sweep.clock.seconds)
        started = perf_counter()
        scoring = sweep.score(tokenizer)
        clock.add("score", started)
    finally:
        streamer.close()
    baseline = scoring.baseline
    return QuantizationCheck(
        method=METHOD,
        weights=options.weights,
        matrices=sweep.matrices,
        clip_rule=ClipRuleInfo(
            **options.clip_rule.as_dict(), description=options.clip_rule.describe()
        ),
        kept=kept.weights,
        kept_from=kept.source,
        eval=EvalInfo(
            path=display_path(eval_text.path),
            sha256=eval_text.sha256,
            tokens=baseline.tokens + len(windows),
            windows=len(windows),
            window_tokens=max((w.shape[1] for w in window_ids), default=0),
            context_tokens=context.tokens,
            context_source=context.source,
        ),
        baseline=ScoreOut(**baseline.as_dict()),
        results=[
            QuantizedScore(
                **scoring.scores[s.name].as_dict(),
                ratio=scoring.scores[s.name].perplexity / baseline.perplexity,
                interval=_ratio_interval(scoring.differences[s.name]),
                bits=s.bits,
                block=s.block,
                variant=s.variant.value,
            )
            for s in sweep.settings
        ],
        code_version=code_version(),
        device=str(streamer.device),
        timings=clock.rounded(),
        bytes_read=streamer.bytes_read,
    )
