"""The whole job in streamed sweeps of the weights: detection on a few prompts, and validation of
every candidate with its controls on the evaluation text, each variant stopped as soon as its
verdict cannot change.

Layers are streamed in order, each read once per sweep. Every input sequence passes each layer as
the layer goes by: the detection prompts, the evaluation windows as the model is (the baseline),
and each *variant* (a candidate zeroed, its super activation restored, the controls) on the
windows it still needs. A variant is forked from the baseline at the layer where its candidate's
spike appears: the layers below see identical inputs, so their work is shared. Variants that pass
a layer on the same window go through it together, as one batch.

The first sweep detects and scores every variant on the first window. The judge
(`validation.judge`) then stops the variants whose interval already excludes their threshold and
asks for more windows of the others, and for the follow-ups (restores, members of a verified
shadow group); each further sweep starts at the earliest layer that work needs (layer 0 when a
window's baseline is new), so most jobs need one or two sweeps.
"""

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch

from workers.contract.progress import LOAD_STEPS
from workers.contract.report import Report
from workers.science.detection import DetectionState
from workers.science.evaluation import (
    Score,
    TokenScores,
    WindowScore,
    baseline_scores,
    next_token_targets,
    stop_word_ids,
    token_scores,
)
from workers.science.pipeline.findings import (
    LayerFindings,
    LayerSites,
    observe,
    plan,
    recording_layer,
)
from workers.science.pipeline.steps import (
    AnalysisOptions,
    Clock,
    Progress,
    open_job,
    report_progress,
)
from workers.science.streaming import LayerStreamer, SequenceCapture
from workers.science.validation.ablation import applied, recording
from workers.science.validation.judge import Judge, VariantRun

# Activations one batch of variants may take while it passes a layer: the MLP's hidden
# activations and the attention scores of every sequence in the batch, in the compute dtype.
# A quarter of a GiB keeps a batch well under the layers' own size on a 7B-shaped model.
BATCH_ACTIVATION_BYTES = 256 * 1024**2
# Logits computed at once while scoring (rows x vocabulary): at most 8M float32 values, 32 MiB
# per tensor (scoring keeps about four alive). A window's rows are split into chunks of equal
# size under that bound: the head's matrix product runs much faster on 128 rows than on 64
# (docs/measurements.md#scoring-chunks).
SCORE_CHUNK_ELEMENTS = 8 * 1024**2


@dataclass
class _Window:
    """The baseline on one evaluation window: kept where variants fork from it."""

    capture: SequenceCapture
    inputs: dict[int, torch.Tensor] = field(default_factory=dict)  # fork layer -> its input
    # (fork layer, projection module path) -> that projection's output
    outputs: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    final: torch.Tensor | None = None  # after the last layer
    scores: TokenScores | None = None


def _activation_bytes_per_token(config, tokens: int, element_bytes: int) -> int:
    text = config.get_text_config()
    hidden = getattr(text, "hidden_size", None) or text.n_embd
    d_ff = (
        getattr(text, "intermediate_size", None)
        or getattr(text, "ffn_dim", None)
        or getattr(text, "n_inner", None)
        or 4 * hidden
    )
    heads = getattr(text, "num_attention_heads", None) or getattr(text, "n_head", None) or 1
    return element_bytes * (3 * d_ff + 4 * hidden + heads * tokens)


class Sweep:
    """Streamed passes over the layers carrying every sequence of the job."""

    def __init__(
        self,
        streamer: LayerStreamer,
        prompts: SequenceCapture,
        windows: list[SequenceCapture],
        judge: Judge | None,
        stop_ids: torch.Tensor | None,
        progress: Progress | None = None,
    ):
        self.streamer = streamer
        self.feed_forward = streamer.feed_forward
        self.prompts = prompts
        self.windows = [_Window(c) for c in windows]
        self.judge = judge
        self.stop_ids = stop_ids
        self.progress = progress
        assert prompts.lengths is not None, "the prompts' capture keeps each prompt's length"
        self.lengths: list[int] = prompts.lengths
        self.state = DetectionState(len(self.lengths))
        self.clock = Clock()
        self.rounds = 0
        self._config = streamer.model.config
        self._element = torch.empty((), dtype=streamer.dtype).element_size()

    # ---- the rounds ----------------------------------------------------------------------

    def run(self) -> None:
        self._round(detect=True)
        while self.judge is not None and self.judge.pending():
            self._round(detect=False)

    def _round(self, detect: bool) -> None:
        streamer, judge = self.streamer, self.judge
        self.rounds += 1
        work: dict[VariantRun, list[int]] = {r: r.missing for r in judge.pending()} if judge else {}
        if detect and judge is not None:
            fresh = set(judge.first_windows())
        else:
            fresh = {w for ws in work.values() for w in ws if self.windows[w].final is None}
        baseline = {w: self.windows[w].capture.embeddings for w in sorted(fresh)}
        if detect or baseline:
            first = 0
        else:
            first = min(r.plan.layer for r in work)
        carried: dict[tuple[VariantRun, int], torch.Tensor] = {}
        prompt_hidden = self.prompts.embeddings if detect else None
        for layer in range(first, streamer.num_layers):
            started = perf_counter()
            module = streamer.load_layer(layer)
            streamer.prefetch(layer + 1)
            started = self.clock.add("read_wait", started)
            # A layer without a feed-forward block (a hybrid's mixer-only layer) still runs, with
            # nothing to detect or fork at.
            sites = LayerSites.of(self.feed_forward, layer, module)
            found = LayerFindings(layer)
            if detect:
                assert prompt_hidden is not None  # the prompts pass every layer when detecting
                prompt_hidden, found = self._detect(sites, prompt_hidden)
                started = self.clock.add("detect", started)
            if judge is not None:
                forks = bool(found) or judge.forks_at(layer)
                self._baseline(sites, baseline, record=forks and not sites.empty)
                if found:
                    for run in plan(judge, sites, found):
                        work[run] = run.missing
                self._carry(layer, carried)
                for run, windows in work.items():
                    if run.plan.layer == layer:
                        for w in windows:
                            carried[(run, w)] = self._fork(sites, run, w)
                self.clock.add("validate", started)
            streamer.release_layer(layer)
            # Layers passed, counted from layer 0 whatever layer a round starts at: the first
            # round detects and validates side by side, later rounds only validate.
            if detect:
                report_progress(self.progress, "detect", layer + 1, streamer.num_layers)
            if judge is not None:
                report_progress(self.progress, "validate", layer + 1, streamer.num_layers)
        for w, final in baseline.items():
            self.windows[w].final = final
        if judge is not None:
            started = perf_counter()
            self._score(carried)
            judge.advance()
            self.clock.add("score", started)

    # ---- one layer -------------------------------------------------------------------------

    def _detect(
        self, sites: LayerSites, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, LayerFindings]:
        """The prompts, one right-padded batch, pass the layer; each is summarised on its own
        tokens (a causal model's real tokens never see the padding after them)."""
        layer = sites.layer
        if sites.empty:
            return self.streamer.run_layer(layer, hidden, self.prompts), LayerFindings(layer)
        with recording_layer(sites) as recorders:
            hidden = self.streamer.run_layer(layer, hidden, self.prompts)
        batch, tokens = self.prompts.input_ids.shape
        return hidden, observe(
            self.state, sites, recorders, (int(batch), int(tokens)), self.lengths
        )

    def _baseline(self, sites: LayerSites, hidden: dict[int, torch.Tensor], record: bool) -> None:
        """The baseline windows new in this round pass the layer; at a fork layer their input
        and the output of each projection a variant watches are kept for the variants forked
        there, now or later."""
        layer = sites.layer
        modules = sites.modules() if record else {}
        with ExitStack() as stack:
            recorders = {path: stack.enter_context(recording(m)) for path, m in modules.items()}
            for w in hidden:
                window = self.windows[w]
                if record:
                    window.inputs[layer] = hidden[w]
                hidden[w] = self.streamer.run_layer(layer, hidden[w], window.capture)
                for path, recorder in recorders.items():
                    assert recorder.outputs is not None  # the window just passed the layer
                    window.outputs[(layer, path)] = recorder.outputs

    def _fork(self, sites: LayerSites, run: VariantRun, w: int) -> torch.Tensor:
        window, layer = self.windows[w], sites.layer
        site, module = sites.for_plan(run.plan.routed)
        with applied(run.plan, module, site, window.outputs[(layer, site.module)]):
            return self.streamer.run_layer(layer, window.inputs[layer], window.capture)

    def _max_batch(self, tokens: int) -> int:
        per_token = _activation_bytes_per_token(self._config, tokens, self._element)
        return max(1, BATCH_ACTIVATION_BYTES // (per_token * tokens))

    def _carry(self, layer: int, carried: dict[tuple[VariantRun, int], torch.Tensor]) -> None:
        """Variants forked below this layer pass it, batched by window."""
        by_window: dict[int, list[tuple[VariantRun, int]]] = {}
        for key in carried:
            if key[0].plan.layer < layer:
                by_window.setdefault(key[1], []).append(key)
        for w, keys in by_window.items():
            capture = self.windows[w].capture
            size = self._max_batch(int(capture.input_ids.numel()))
            for start in range(0, len(keys), size):
                batch = keys[start : start + size]
                stacked = torch.cat([carried[k] for k in batch])
                output = self.streamer.run_layer(layer, stacked, capture)
                for k, hidden in zip(batch, output.split(1), strict=True):
                    carried[k] = hidden

    # ---- scoring -------------------------------------------------------------------------

    def _score(self, carried: dict[tuple[VariantRun, int], torch.Tensor]) -> None:
        """Every window a variant reached in this round: the baseline's next-token distribution
        once per row, each variant's rows scored against it, a chunk of rows at a time."""
        judge, stop_ids = self.judge, self.stop_ids
        assert judge is not None and stop_ids is not None  # variants come from the judge
        by_window: dict[int, list[VariantRun]] = {}
        for run, w in carried:
            by_window.setdefault(w, []).append(run)
        if not by_window:
            return  # nothing reached the head this round: no scoring to report
        vocab = self.streamer.vocab_size
        # The stage's units are the chunks of rows scored (every window's), reported from 0 when
        # scoring starts: its count and its time are the scoring's real work.
        steps, total = {}, 0
        for w in by_window:
            rows = next_token_targets(self.windows[w].capture.input_ids).numel()
            chunks = -(-rows * vocab // SCORE_CHUNK_ELEMENTS)  # ceiling division
            steps[w] = -(-rows // chunks)
            total += -(-rows // steps[w])  # the chunks the loop below runs
        done = 0
        report_progress(self.progress, "score", done, total)
        for w in sorted(by_window):
            window = self.windows[w]
            assert window.final is not None  # a variant's window has passed as the baseline
            targets = next_token_targets(window.capture.input_ids)
            rows = targets.numel()
            step = steps[w]
            own_parts: list[TokenScores] = []
            parts: dict[VariantRun, list[TokenScores]] = {run: [] for run in by_window[w]}
            for start in range(0, rows, step):
                end = min(rows, start + step)
                base_rows, own = baseline_scores(
                    self._head(window.final, start, end), targets[start:end], stop_ids
                )
                own_parts.append(own)
                for run in by_window[w]:
                    logits = self._head(carried[(run, w)], start, end)
                    parts[run].append(token_scores(logits, targets[start:end], stop_ids, base_rows))
                del base_rows
                done += 1
                report_progress(self.progress, "score", done, total)
            if window.scores is None:
                window.scores = TokenScores.cat(own_parts)
            for run, run_parts in parts.items():
                judge.record(run, w, TokenScores.cat(run_parts), window.scores)
                del carried[(run, w)]

    def _head(self, final_hidden: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Next-token logits of positions start..end-1 (predicting tokens start+1..end)."""
        logits = self.streamer.head(final_hidden[:, start:end])
        return logits.reshape(-1, logits.shape[-1])

    def baseline_score(self) -> Score:
        return Score([WindowScore.of(w.scores) for w in self.windows if w.scores is not None])


def pad_id(tokenizer) -> int:
    """A token to pad with: never attended to, so any token the tokenizer has will do."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def analyse(
    model_dir: Path | str, options: AnalysisOptions | None = None, progress: Progress | None = None
) -> Report:
    """Detect the super weights of a local checkpoint and, unless told not to, validate them.

    `progress(stage, done, total)` hears of each stage ("load", "detect", "validate", "score")
    as its work advances."""
    job = open_job(model_dir, options, progress)
    started = perf_counter()
    judge = job.judge()
    streamer = LayerStreamer(job.checkpoint, job.options.device, head=judge is not None)
    try:
        # The prompts run as one right-padded batch: one call per layer instead of one per prompt.
        ids, mask = streamer.padded(job.prompt_ids, pad_id(job.tokenizer))
        prompts, *windows = streamer.capture_all(
            [ids, *job.windows], [mask] + [None] * len(job.windows)
        )
        stop_ids = stop_word_ids(job.tokenizer) if judge is not None else None
        started = job.clock.add("load", started)
        report_progress(progress, "load", LOAD_STEPS, LOAD_STEPS)
        sweep = Sweep(streamer, prompts, windows, judge, stop_ids, progress)
        sweep.run()
        job.clock.seconds.update(sweep.clock.seconds)
    finally:
        streamer.close()
    return job.report(
        sweep.state,
        judge,
        sweep.baseline_score() if judge is not None else None,
        tensor_names=streamer.names,
        device=str(streamer.device),
        bytes_read=streamer.bytes_read,
        rounds=sweep.rounds,
        expert_tensors={p: s.expert_names for p, s in streamer.stacked.items()},
    )
