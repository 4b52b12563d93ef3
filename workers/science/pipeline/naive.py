"""The naive approach, as the paper's code and public notebooks do it: load the whole model with
`from_pretrained`, hook every down projection, one pass per prompt for detection, then one full
pass per variant (each candidate zeroed, restored, each control) for validation.

It shares every decision with the streamed sweep (the steps of `pipeline.steps`: detection state,
variant plans, ablation mechanics, scoring, report) and differs only in how activations reach
each layer, so the two must agree: tests check that they do, and `swreg bench` times one
against the other.

Its `bytes_read` is measured, not assumed: `from_pretrained` memory-maps the weight files, so
they are evicted from the page cache once opened (and hashed), and the figure is what the kernel
then counts this process reading from storage until the analysis ends (`disk_reads`). Unused
tensors in the files are therefore not counted, as they are not by the streamed reader.
"""

from pathlib import Path
from time import perf_counter

import torch
from transformers import AutoModelForCausalLM

from workers.contract.report import Report
from workers.science.detection import DetectionState, summarize
from workers.science.disk_reads import evict_from_page_cache, read_bytes_so_far
from workers.science.evaluation import stop_word_ids
from workers.science.pipeline.steps import (
    AnalysisOptions,
    Scoring,
    layer_plans,
    open_job,
)
from workers.science.streaming import checkpoint_names, compute_dtype_for, stored_dtype
from workers.science.validation.ablation import OutputRecorder, applied


@torch.inference_mode()
def analyse_naive(model_dir: Path | str, options: AnalysisOptions | None = None) -> Report:
    job = open_job(model_dir, options)
    evict_from_page_cache([job.checkpoint.path / f.name for f in job.checkpoint.weight_files])
    read_before = read_bytes_so_far()
    started = perf_counter()
    architecture = job.checkpoint.architecture
    device = torch.device(job.options.device)
    model = AutoModelForCausalLM.from_pretrained(
        job.checkpoint.path,
        dtype=compute_dtype_for(device, stored_dtype(job.checkpoint)),
        attn_implementation=architecture.attention,
        trust_remote_code=False,
        use_safetensors=True,
    ).to(device)
    model.eval()
    down_projs = [layer.get_submodule(architecture.down_proj) for layer in model.get_submodule(architecture.layers)]
    recorders = [OutputRecorder(d, keep_inputs=True) for d in down_projs]
    started = job.clock.add("load", started)

    activities: list[list] = [[] for _ in down_projs]
    for prompt_ids in job.prompt_ids:
        model(input_ids=prompt_ids.to(device), use_cache=False)
        for layer, recorder in enumerate(recorders):
            activities[layer].append(summarize(recorder.inputs, recorder.outputs))
    state = DetectionState(len(job.prompts))
    per_layer = [
        state.observe_layer(layer, activities[layer], architecture.out_in(d.weight))
        for layer, d in enumerate(down_projs)
    ]
    started = job.clock.add("detect", started)

    plans, scoring = [], None
    if job.windows:
        windows = [w.to(device) for w in job.windows]
        scoring = Scoring(stop_word_ids(job.tokenizer))
        baseline_outputs = []
        for w, window in enumerate(windows):
            scoring.add_baseline(w, model(input_ids=window, use_cache=False).logits, window)
            baseline_outputs.append([r.outputs for r in recorders])
        for layer, candidates in enumerate(per_layer):
            weight = architecture.out_in(down_projs[layer].weight)
            for plan, threshold in layer_plans(layer, candidates, weight):
                for w, window in enumerate(windows):
                    with applied(plan, down_projs[layer], architecture, baseline_outputs[w][layer], threshold):
                        logits = model(input_ids=window, use_cache=False).logits
                    scoring.add(plan.name, w, logits, window)
                plans.append(plan)
        job.clock.add("validate", started)
    for recorder in recorders:
        recorder.remove()
    names = checkpoint_names(model, job.checkpoint)
    return job.report(
        state, plans, scoring,
        tensor_names=names, device=str(device), bytes_read=read_bytes_so_far() - read_before,
    )
