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

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from types import SimpleNamespace
from typing import cast

import torch
from transformers import AutoModelForCausalLM

from workers.contract.report import Report
from workers.science.detection import DetectionState
from workers.science.disk_reads import evict_from_page_cache, read_bytes_so_far
from workers.science.evaluation import (
    Score,
    WindowScore,
    baseline_scores,
    next_token_targets,
    stop_word_ids,
    token_scores,
)
from workers.science.experts import ExpertRecorder
from workers.science.pipeline.findings import (
    LayerRecorders,
    LayerSites,
    observe,
    plan,
    recording_layer,
)
from workers.science.pipeline.steps import AnalysisOptions, open_job
from workers.science.streaming import compute_dtype_for, stored_dtype, stored_layout
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
    ).to(device)  # type: ignore[arg-type]  # transformers' decorated .to() is typed as unbound
    model.eval()
    # Every layer with a feed-forward block: its projection sites and modules.
    sites = {
        index: found
        for index, layer in enumerate(model.get_submodule(feed_forward.layers))
        if not (found := LayerSites.of(feed_forward, index, layer)).empty
    }
    started = job.clock.add("load", started)

    # Detection: one pass per prompt, every layer recorded; then each layer read in order.
    recorded: dict[int, list[LayerRecorders]] = {layer: [] for layer in sites}
    for prompt_ids in job.prompt_ids:
        with ExitStack() as stack:
            recorders = {
                layer: stack.enter_context(recording_layer(s)) for layer, s in sites.items()
            }
            model(input_ids=prompt_ids.to(device), use_cache=False)
        for layer, recorder in recorders.items():
            recorded[layer].append(recorder)
    state = DetectionState(len(job.prompts))
    lengths = [int(p.numel()) for p in job.prompt_ids]
    findings = {
        layer: observe(
            state,
            sites[layer],
            _one_batch(recorded[layer], max(lengths)),
            (len(lengths), max(lengths)),
            lengths,
        )
        for layer in sites
    }
    started = job.clock.add("detect", started)

    judge, baseline, rounds = job.judge(), None, 0
    if judge is not None:
        windows = [w.to(device) for w in job.windows]
        stop_ids = stop_word_ids(job.tokenizer)
        watched = {
            (layer, path): m for layer, s in sites.items() for path, m in s.modules().items()
        }
        output_recorders = {key: OutputRecorder(m) for key, m in watched.items()}
        rows, own, outputs = [], [], []
        for window in windows:
            baseline_rows, scores = baseline_scores(
                _next_token_logits(model, window), next_token_targets(window), stop_ids
            )
            rows.append(baseline_rows)
            own.append(scores)
            outputs.append({key: r.outputs for key, r in output_recorders.items()})
        for output_recorder in output_recorders.values():
            output_recorder.remove()
        baseline = Score([WindowScore.of(s) for s in own])
        for layer, layer_findings in findings.items():
            if layer_findings:
                plan(judge, sites[layer], layer_findings)
        while pending := judge.pending():
            rounds += 1
            for run in pending:
                layer = run.plan.layer
                site, module = sites[layer].for_plan(run.plan.routed)
                for w in run.missing:
                    with applied(run.plan, module, site, outputs[w][(layer, site.module)]):
                        logits = _next_token_logits(model, windows[w])
                    scores = token_scores(logits, next_token_targets(windows[w]), stop_ids, rows[w])
                    judge.record(run, w, scores, own[w])
            judge.advance()
        job.clock.add("validate", started)
    layout = stored_layout(model, job.checkpoint.tensor_file, str(job.checkpoint.path))
    return job.report(
        state,
        judge,
        baseline,
        tensor_names=layout.renamed,
        device=str(device),
        bytes_read=read_bytes_so_far() - read_before,
        rounds=rounds,
        expert_tensors={p: s.expert_names for p, s in layout.stacked.items()},
    )


def _one_batch(per_prompt: list[LayerRecorders], longest: int) -> LayerRecorders:
    """One layer's recorders of each prompt's own pass, as if the prompts had run as one
    right-padded batch (what `findings.observe` reads): each prompt's rows padded to the longest,
    each expert call's tokens renumbered into the batch."""
    # Every prompt passed the same layer, so each has the recorders the first has. The batch's
    # stand-ins carry what `observe` reads of them (inputs and outputs; calls).
    dense = None
    if per_prompt[0].dense is not None:
        denses = [cast(OutputRecorder, r.dense) for r in per_prompt]
        dense = SimpleNamespace(
            inputs=torch.cat([_padded(d.inputs, longest) for d in denses]),
            outputs=torch.cat([_padded(d.outputs, longest) for d in denses]),
        )
    experts = None
    if per_prompt[0].experts is not None:
        calls = [
            replace(call, tokens=call.tokens + i * longest)
            for i, r in enumerate(per_prompt)
            for call in cast(ExpertRecorder, r.experts).calls
        ]
        experts = SimpleNamespace(calls=calls)
    return LayerRecorders(
        dense=cast(OutputRecorder | None, dense), experts=cast(ExpertRecorder | None, experts)
    )


def _padded(values: torch.Tensor | None, tokens: int) -> torch.Tensor:
    """[1, T, f] (or [T, f]) as [1, tokens, f], zero rows after the sequence."""
    assert values is not None, "recorded (inputs kept) on every prompt's pass"
    flat = values.reshape(-1, values.shape[-1])
    out = flat.new_zeros((tokens, flat.shape[-1]))
    out[: flat.shape[0]] = flat
    return out.unsqueeze(0)
