"""The figures of each part of `swreg bench`: both approaches run and timed on a checkpoint,
detection alone, a capped run, the 1.5B checkpoints judged, the bytes a worker fetches; and
whether the two approaches' reports agree."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from workers.commands.bench.checkpoints import (
    SyntheticShape,
    expected_verdicts,
    read_once,
    synthetic_checkpoint,
    weight_files,
)
from workers.commands.bench.child import CHILD_MODULE, ChildRun, run_approach, run_detect_command
from workers.commands.bench.memory import MemoryCap
from workers.fixtures.cache import cache_root
from workers.science.disk_reads import evict_from_page_cache
from workers.science.evaluation_defaults import DEFAULT_EVAL_TOKENS

# Evaluation tokens on the synthetic checkpoints: the default budget, as for SmolLM2.
SYNTHETIC_EVAL_TOKENS = DEFAULT_EVAL_TOKENS
FETCH_REPO = "swreg-bench/smollm2-with-duplicates"
# Detection alone takes seconds, most of them imports: its ratio is the median of paired runs.
DETECTION_REPEATS = 3


def _report(document: dict):
    # pydantic behind the report model: imported when a run is judged, not for `bench -h`.
    from workers.contract.report import Report

    return Report.model_validate(document)


def _verdicts(report: dict) -> list[tuple]:
    parsed = _report(report)
    return [(sw.tensor, tuple(sw.index), sw.state) for sw in parsed.super_weights]


def _expert_verdicts(report: dict) -> list[tuple]:
    return [(se.layer, se.expert, se.state) for se in _report(report).super_experts]


def agreement(swreg: dict, naive: dict) -> dict:
    """Do the two reports name the same coordinates with the same verdicts, and does the naive
    (exhaustive) ablation ratio of each lie inside swreg's interval?"""
    same = _verdicts(swreg) == _verdicts(naive) and _expert_verdicts(swreg) == _expert_verdicts(
        naive
    )
    inside = True
    # strict=False: reports that disagree may name different numbers of weights (`same` says so)
    pairs = zip(_report(swreg).super_weights, _report(naive).super_weights, strict=False)
    for x, y in pairs:
        vx, vy = x.evidence.validation, y.evidence.validation
        if vx and vy and vx.ablated.interval:
            inside &= vx.ablated.interval.low <= vy.ablated.ratio <= vx.ablated.interval.high
    return {"same_coordinates_and_verdicts": same, "naive_ratio_inside_swreg_interval": inside}


def _variant_tokens(run: ChildRun) -> dict | None:
    validation = run.result and run.result["report"].get("validation")
    if not validation:
        return None
    return {
        "scored": validation["variant_tokens"],
        "on_whole_budget": validation["exhaustive_variant_tokens"],
        "variants": validation["variants"],
        "rounds": validation["rounds"],
    }


def _figures(run: ChildRun) -> dict:
    return {
        "ok": run.ok,
        "returncode": run.returncode,
        "wall_s": run.wall_seconds,
        "peak_host_bytes": run.peak_host_bytes,
        "peak_gpu_bytes": run.result and run.result["peak_gpu_bytes"],
        "bytes_read": run.result and run.result["report"]["bytes_read"],
        "timings": run.result and run.result["report"]["timings"],
        "variant_tokens": _variant_tokens(run),
        "super_weights": run.result and [list(v) for v in _verdicts(run.result["report"])],
        "super_experts": run.result and [list(v) for v in _expert_verdicts(run.result["report"])],
        "error": None if run.ok else run.stderr_tail.strip().splitlines()[-1:],
    }


def compare(model_dir: Path, device: str, eval_tokens: int) -> dict:
    """The whole job, naive against swreg, each from a cold page cache."""
    files = weight_files(model_dir)
    read_cold, total = read_once(files, cold=True)
    read_warm, _ = read_once(files, cold=False)
    evict_from_page_cache(files)
    naive = run_approach("naive", model_dir, device, eval_tokens)
    evict_from_page_cache(files)
    swreg = run_approach("swreg", model_dir, device, eval_tokens)
    figures = {
        "checkpoint": str(model_dir),
        "checkpoint_bytes": total,
        "read_once_cold_s": read_cold,
        "read_once_warm_s": read_warm,
        "eval_tokens": eval_tokens,
        "naive": _figures(naive),
        "swreg": _figures(swreg),
    }
    if naive.ok and swreg.ok:
        figures["swreg_over_naive"] = swreg.wall_seconds / naive.wall_seconds
        figures["peak_swreg_over_naive"] = swreg.peak_host_bytes / naive.peak_host_bytes
        figures["swreg_over_read_cold"] = swreg.wall_seconds / read_cold
        figures["agreement"] = agreement(swreg.report, naive.report)
    return figures


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def compare_detection(model_dir: Path, device: str, repeats: int = DETECTION_REPEATS) -> dict:
    """Detection alone: `swreg detect --no-validate --json` against the naive one-pass detection
    (the whole model loaded, one pass per prompt), in `repeats` pairs (each from a cold page
    cache); the figures of the median run of each, and the median of the paired ratios."""
    pairs = []
    for _ in range(repeats):
        evict_from_page_cache(weight_files(model_dir))
        naive = run_approach("naive", model_dir, device, SYNTHETIC_EVAL_TOKENS, validate=False)
        evict_from_page_cache(weight_files(model_dir))
        swreg = run_detect_command(model_dir, device)
        pairs.append((naive, swreg))
    naive = sorted((p[0] for p in pairs), key=lambda r: r.wall_seconds)[len(pairs) // 2]
    swreg = sorted((p[1] for p in pairs), key=lambda r: r.wall_seconds)[len(pairs) // 2]
    figures = {
        "checkpoint": str(model_dir),
        "repeats": repeats,
        "naive": _figures(naive),
        "swreg": _figures(swreg),
        "wall_s_all": {
            "naive": [p[0].wall_seconds for p in pairs],
            "swreg": [p[1].wall_seconds for p in pairs],
        },
    }
    if all(n.ok and s.ok for n, s in pairs):
        figures["swreg_over_naive"] = _median([s.wall_seconds / n.wall_seconds for n, s in pairs])
        figures["peak_swreg_over_naive"] = _median(
            [s.peak_host_bytes / n.peak_host_bytes for n, s in pairs]
        )
        figures["same_candidates"] = _verdicts(swreg.report) == _verdicts(naive.report)
    return figures


def memory_capped(model_dir: Path, device: str, eval_tokens: int, cap_bytes: int) -> dict:
    size = sum(f.stat().st_size for f in weight_files(model_dir))
    figures = {"checkpoint": str(model_dir), "checkpoint_bytes": size, "cap_bytes": cap_bytes}
    for approach in ("swreg", "naive"):
        evict_from_page_cache(weight_files(model_dir))
        with MemoryCap(cap_bytes) as cap:
            run = run_approach(approach, model_dir, device, eval_tokens, cap)
            figures["cap_kind"] = cap.label
            figures[approach] = {**_figures(run), "cgroup_peak_bytes": cap.peak_bytes()}
    return figures


def judge_large(shape: SyntheticShape, device: str, eval_tokens: int) -> dict:
    """swreg alone on the 1.5B-parameter checkpoints, with and without a planted super weight
    (both with a decoy spike): its verdicts against those the construction implies."""
    figures = {}
    for plant in (True, False):
        path = synthetic_checkpoint(shape, plant=plant, decoy=True)
        evict_from_page_cache(weight_files(path))
        run = run_approach("swreg", path, device, eval_tokens)
        found = {}
        if run.ok:
            for sw in _report(run.report).super_weights:
                found[(sw.layer, sw.row, sw.col)] = sw.state
        expected = expected_verdicts(shape, plant, decoy=True)
        figures["with_plant" if plant else "without_plant"] = {
            **_figures(run),
            "checkpoint": str(path),
            "checkpoint_bytes": sum(f.stat().st_size for f in weight_files(path)),
            "verdicts_as_constructed": run.ok and found == expected,
        }
    return figures


def fetch_ratio(model_dir: Path) -> dict:
    """Bytes a worker fetches over the bytes of a repository that also carries a pickle (.bin)
    and a GGUF copy of the same model, laid out in an offline Hugging Face cache.

    The fetch runs in a child process because huggingface_hub reads HF_HUB_OFFLINE when it is
    imported; this process imported it long ago.
    """
    from workers.fixtures.hf_cache import install_into_hf_cache
    from workers.fixtures.smollm2 import smollm2_gguf_path

    cache = cache_root() / "bench" / "hf-cache"
    weights = sum(f.stat().st_size for f in weight_files(model_dir))
    extra = {
        # Same size as the safetensors weights: what a PyTorch pickle of them would weigh. It is
        # never read, only listed and skipped.
        "pytorch_model.bin": bytes(weights),
        "SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_gguf_path().read_bytes(),
    }
    sha = install_into_hf_cache(model_dir, cache, FETCH_REPO, extra_files=extra)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fetch.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                CHILD_MODULE,
                "fetch",
                FETCH_REPO,
                "--revision",
                sha,
                "--cache",
                str(cache),
                "--out",
                str(out),
            ],
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        return json.loads(out.read_text())
