"""The naive approach, as the paper's code and public notebooks do it: load the whole model with
`from_pretrained`, hook every down projection, one pass per prompt for detection, then one full
pass per variant and evaluation window, every variant on the whole evaluation budget.

It shares every decision with the streamed sweep (the steps of `pipeline.steps`, the judge that
plans the variants and gives the verdicts, the ablation mechanics, the scoring, the report) and
differs only in how activations reach each layer and in scoring every variant exhaustively, so the
two must agree: tests check that they do, and `swreg bench` times one against the other.

Its `bytes_read` is measured, not assumed: `from_pretrained` memory-maps the weight files, so
they are evicted from the page cache once opened (and hashed), and the figure is what the kernel
then counts this process reading from storage until the analysis ends (`disk_reads`). Unused
tensors in the files are therefore not counted, as they are not by the streamed reader.
"""

from dataclasses import replace
from pathlib import Path
from time import perf_counter

import torch
from transformers import AutoModelForCausalLM

from workers.contract.report import Report
from workers.science.detection import DetectionState, summarize
from workers.science.disk_reads import evict_from_page_cache, read_bytes_so_far
from workers.science.evaluation import (
    Score,
    WindowScore,
    baseline_scores,
    next_token_targets,
    stop_word_ids,
    token_scores,
)
from workers.science.pipeline.steps import AnalysisOptions, open_job
from workers.science.streaming import checkpoint_names, compute_dtype_for, stored_dtype
from workers.science.validation.ablation import OutputRecorder, applied


def _next_token_logits(model, window: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=window, use_cache=False).logits
    return logits.reshape(-1, logits.shape[-1])[:-1]


@torch.inference_mode()
def analyse_naive(model_dir: Path | str, options: AnalysisOptions | None = None) -> Report:
    # The naive approach scores every variant on every window (the exhaustive evaluation).
    job = open_job(model_dir, replace(options or AnalysisOptions(), sequential=False))
    evict_from_page_cache([job.checkpoint.path / f.name for f in job.checkpoint.weight_files])
    read_before = read_bytes_so_far()
    started = perf_counter()
    feed_forward = job.checkpoint.feed_forward
    device = torch.device(job.options.device)
    model = AutoModelForCausalLM.from_pretrained(
        job.checkpoint.path,
        dtype=compute_dtype_for(device, stored_dtype(job.checkpoint)),
        attn_implementation=feed_forward.attention,
        trust_remote_code=False,
        use_safetensors=True,
    ).to(device)
    model.eval()
    # Layer -> (its dense projection site, that module); layers without one are left out.
    sites = {
        index: (site, layer.get_submodule(site.module))
        for index, layer in enumerate(model.get_submodule(feed_forward.layers))
        if (site := feed_forward.dense_site(index)) is not None
    }
    down_projs = {layer: module for layer, (_, module) in sites.items()}

    def out_in(layer: int) -> torch.Tensor:
        site, module = sites[layer]
        return site.out_in(getattr(module, site.parameter))

    recorders = {layer: OutputRecorder(d, keep_inputs=True) for layer, d in down_projs.items()}
    started = job.clock.add("load", started)

    activities: dict[int, list] = {layer: [] for layer in down_projs}
    for prompt_ids in job.prompt_ids:
        model(input_ids=prompt_ids.to(device), use_cache=False)
        for layer, recorder in recorders.items():
            activities[layer].append(summarize(recorder.inputs, recorder.outputs))
    for recorder in recorders.values():
        recorder.remove()
    state = DetectionState(len(job.prompts))
    per_layer = {layer: state.observe_layer(layer, activities[layer], out_in(layer)) for layer in down_projs}
    started = job.clock.add("detect", started)

    judge, baseline, rounds = job.judge(), None, 0
    if judge is not None:
        windows = [w.to(device) for w in job.windows]
        stop_ids = stop_word_ids(job.tokenizer)
        recorders = {layer: OutputRecorder(d) for layer, d in down_projs.items()}
        rows, own, outputs = [], [], []
        for window in windows:
            baseline_rows, scores = baseline_scores(
                _next_token_logits(model, window), next_token_targets(window), stop_ids
            )
            rows.append(baseline_rows)
            own.append(scores)
            outputs.append({layer: r.outputs for layer, r in recorders.items()})
        for recorder in recorders.values():
            recorder.remove()
        baseline = Score([WindowScore.of(s) for s in own])
        for layer, candidates in per_layer.items():
            judge.plan_layer(layer, candidates, out_in(layer))
        while pending := judge.pending():
            rounds += 1
            for run in pending:
                layer = run.plan.layer
                for w in run.missing:
                    with applied(run.plan, down_projs[layer], sites[layer][0], outputs[w][layer]):
                        logits = _next_token_logits(model, windows[w])
                    scores = token_scores(logits, next_token_targets(windows[w]), stop_ids, rows[w])
                    judge.record(run, w, scores, own[w])
            judge.advance()
        job.clock.add("validate", started)
    names = checkpoint_names(model, job.checkpoint)
    return job.report(
        state, judge, baseline,
        tensor_names=names, device=str(device), bytes_read=read_bytes_so_far() - read_before,
        rounds=rounds,
    )
