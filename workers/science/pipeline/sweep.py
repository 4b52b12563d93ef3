"""The whole job in one sweep of the weights: detection on a few prompts, and validation of
every candidate with its controls on the evaluation text.

Layers are streamed once, in order. Every input sequence passes each layer as the layer goes by:
the detection prompts, the evaluation text as the model is (the baseline), and each *variant*
(a candidate zeroed, its super activation restored, the controls). A variant is forked from the
baseline at the layer where its candidate's spike appears: the layers below see identical
inputs, so their work is shared, and no layer is read twice.
"""

from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import torch

from workers.contract.report import Report
from workers.science.detection import Candidate, DetectionState, summarize
from workers.science.evaluation import stop_word_ids
from workers.science.pipeline.steps import (
    AnalysisOptions,
    LOAD_STEPS,
    Clock,
    Progress,
    Scoring,
    layer_plans,
    open_job,
    report_progress,
)
from workers.science.streaming import LayerStreamer, SequenceCapture
from workers.science.validation.ablation import applied, recording
from workers.science.validation.variants import VariantPlan


@dataclass
class _Variant:
    plan: VariantPlan
    hidden: list[torch.Tensor]


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
        """Every layer once: detect on the prompts, then (with windows) carry the baseline and
        the variants through it. Both stages count layers."""
        streamer = self.streamer
        report_progress(progress, "detect", 0, streamer.num_layers)
        if self.windows:
            report_progress(progress, "validate", 0, streamer.num_layers)
        for layer in range(streamer.num_layers):
            started = perf_counter()
            module = streamer.load_layer(layer)
            streamer.prefetch(layer + 1)
            started = self.clock.add("read_wait", started)
            down_proj = module.get_submodule(self.architecture.down_proj)
            candidates = self._detect(layer, down_proj)
            started = self.clock.add("detect", started)
            report_progress(progress, "detect", layer + 1, streamer.num_layers)
            if self.windows:
                self._validate(layer, down_proj, candidates)
                self.clock.add("validate", started)
                report_progress(progress, "validate", layer + 1, streamer.num_layers)
            streamer.release_layer(layer)

    def _detect(self, layer: int, down_proj) -> list[Candidate]:
        activities = []
        with recording(down_proj, keep_inputs=True) as recorder:
            for i, capture in enumerate(self.prompts):
                self.prompt_hidden[i] = self.streamer.run_layer(layer, self.prompt_hidden[i], capture)
                activities.append(summarize(recorder.inputs, recorder.outputs))
        return self.state.observe_layer(layer, activities, self.architecture.out_in(down_proj.weight))

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
        weight = self.architecture.out_in(down_proj.weight)
        for plan, threshold in layer_plans(layer, candidates, weight):
            hidden = []
            for w, capture in enumerate(self.windows):
                with applied(plan, down_proj, self.architecture, baseline_outputs[w], threshold):
                    hidden.append(run(layer, layer_inputs[w], capture))
            self.variants.append(_Variant(plan, hidden))

    def score(self, tokenizer, progress: Progress | None = None) -> Scoring:
        """The baseline and every variant scored on every window; progress counts runs."""
        scoring = Scoring(stop_word_ids(tokenizer))
        total = len(self.windows) * (1 + len(self.variants))
        done = 0
        report_progress(progress, "score", done, total)
        for w, capture in enumerate(self.windows):
            scoring.add_baseline(w, self.streamer.logits(capture, self.baseline_hidden[w]), capture.input_ids)
            done += 1
            report_progress(progress, "score", done, total)
            for variant in self.variants:
                logits = self.streamer.logits(capture, variant.hidden[w])
                scoring.add(variant.plan.name, w, logits, capture.input_ids)
                done += 1
                report_progress(progress, "score", done, total)
        return scoring


def analyse(model_dir: Path | str, options: AnalysisOptions | None = None, progress: Progress | None = None) -> Report:
    """Detect the super weights of a local checkpoint and, unless told not to, validate them.

    `progress(stage, done, total)` hears of each stage ("load", "detect", "validate", "score")
    as its work advances."""
    job = open_job(model_dir, options, progress)
    started = perf_counter()
    streamer = LayerStreamer(job.checkpoint, job.options.device)
    try:
        prompts = [streamer.capture(ids) for ids in job.prompt_ids]
        windows = [streamer.capture(w) for w in job.windows]
        started = job.clock.add("load", started)
        report_progress(progress, "load", LOAD_STEPS, LOAD_STEPS)
        sweep = Sweep(streamer, prompts, windows)
        sweep.run(progress)
        job.clock.seconds.update(sweep.clock.seconds)
        started = perf_counter()
        scoring = sweep.score(job.tokenizer, progress) if windows else None
        job.clock.add("score", started)
    finally:
        streamer.close()
    plans = [v.plan for v in sweep.variants]
    return job.report(
        sweep.state, plans, scoring,
        tensor_names=streamer.names, device=str(streamer.device), bytes_read=streamer.bytes_read,
    )
