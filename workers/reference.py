"""The reference approach, as the paper's code and public notebooks do it: load the whole model
with `from_pretrained`, hook every down projection, one pass per prompt for detection, then one
full pass per variant (each candidate zeroed, restored, each control) for validation.

It shares every decision with the streamed sweep (the same detection state, variant plans,
ablation mechanics and scoring) and differs only in how activations reach each layer, so the
two must agree: tests check that they do, and `swreg bench` times one against the other.
"""

from pathlib import Path
from time import perf_counter

import torch
from transformers import AutoModelForCausalLM

from workers.analysis import DEFAULT_PROMPTS, AnalysisOptions, Clock, evaluation_windows, open_for_analysis, tokenize
from workers.detection import DetectionState, summarize
from workers.evaluation import Baseline, Score, score_window, stop_word_ids
from workers.report import build_report
from workers.streaming import checkpoint_names, compute_dtype_for, stored_dtype
from workers.validation import OutputRecorder, applied, as_out_in, plan_variants


@torch.inference_mode()
def analyse_reference(model_dir: Path | str, options: AnalysisOptions | None = None) -> dict:
    options = options or AnalysisOptions()
    clock = Clock()
    checkpoint, tokenizer = open_for_analysis(model_dir, options, clock)
    started = perf_counter()
    architecture = checkpoint.architecture
    device = torch.device(options.device)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint.path,
        dtype=compute_dtype_for(device, stored_dtype(checkpoint)),
        attn_implementation=architecture.attention,
        trust_remote_code=False,
        use_safetensors=True,
    ).to(device)
    model.eval()
    down_projs = [layer.get_submodule(architecture.down_proj) for layer in model.get_submodule(architecture.layers)]
    recorders = [OutputRecorder(d, keep_inputs=True) for d in down_projs]
    started = clock.add("load", started)

    prompts = list(options.prompts or DEFAULT_PROMPTS)
    activities: list[list] = [[] for _ in down_projs]
    for prompt in prompts:
        model(input_ids=tokenize(tokenizer, prompt).to(device), use_cache=False)
        for layer, recorder in enumerate(recorders):
            activities[layer].append(summarize(recorder.inputs, recorder.outputs))
    state = DetectionState(len(prompts))
    per_layer = [
        state.observe_layer(layer, activities[layer], as_out_in(d.weight, architecture))
        for layer, d in enumerate(down_projs)
    ]
    started = clock.add("detect", started)

    plans, scores, baseline, eval_text, windows = [], None, None, None, []
    if options.validate:
        eval_text, windows = evaluation_windows(tokenizer, options)
        windows = [w.to(device) for w in windows]
        stop_ids = stop_word_ids(tokenizer)
        baseline, references, baseline_outputs = Score(), [], []
        for window in windows:
            logits = model(input_ids=window, use_cache=False).logits
            references.append(Baseline.from_logits(logits))
            baseline.add(score_window(logits, references[-1], window, stop_ids))
            baseline_outputs.append([r.outputs for r in recorders])
        scores = {}
        for layer, candidates in enumerate(per_layer):
            thresholds = {(c.row, c.col): c.threshold for c in candidates}
            weight = as_out_in(down_projs[layer].weight, architecture)
            for plan in plan_variants(layer, list(thresholds), weight):
                threshold = thresholds.get(plan.candidate[1:]) if plan.candidate else None
                score = Score()
                for w, window in enumerate(windows):
                    with applied(plan, down_projs[layer], architecture, baseline_outputs[w][layer], threshold):
                        logits = model(input_ids=window, use_cache=False).logits
                    score.add(score_window(logits, references[w], window, stop_ids))
                scores[plan.name] = score
                plans.append(plan)
        clock.add("validate", started)
    for recorder in recorders:
        recorder.remove()
    clock.seconds["total"] = sum(clock.seconds.values())
    return build_report(
        checkpoint=checkpoint,
        tensor_names=checkpoint_names(model, checkpoint),
        device=str(device),
        prompts=prompts,
        state=state,
        plans=plans,
        scores=scores,
        baseline=baseline,
        eval_text=eval_text,
        eval_windows=len(windows),
        timings={k: round(v, 3) for k, v in clock.seconds.items()},
        bytes_read=checkpoint.total_bytes,
    )
