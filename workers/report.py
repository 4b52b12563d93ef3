"""The detection report: what `swreg detect --json` prints and what the workers store."""

import platform
import subprocess
from functools import lru_cache

import torch
import transformers

from registry import __version__
from registry.paths import REPO_ROOT
from workers import detection, validation
from workers.checkpoint import Checkpoint
from workers.detection import Candidate
from workers.evaluation import EvalText, Score
from workers.validation import Kind, VariantPlan


@lru_cache
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__


def _display_path(path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def rules() -> dict:
    return {
        "super_activation_ratio": detection.SUPER_ACTIVATION_RATIO,
        "min_contribution_share": detection.MIN_CONTRIBUTION_SHARE,
        "min_perplexity_ratio": validation.MIN_PERPLEXITY_RATIO,
        "max_random_control_ratio": validation.MAX_RANDOM_CONTROL_RATIO,
        "random_control_weights": validation.RANDOM_CONTROL_WEIGHTS,
        "top_k_control_weights": validation.TOP_K_CONTROL_WEIGHTS,
    }


def _detection_evidence(candidate: Candidate, prompts: int) -> dict:
    seen_in = sorted({o.prompt for o in candidate.observations})
    return {
        "prompts": prompts,
        "seen_in_prompts": seen_in,
        "stability": len(seen_in) / prompts,
        "mean_share": sum(o.share for o in candidate.observations) / len(candidate.observations),
        "observations": [o.as_dict() for o in candidate.observations],
    }


def _score_dict(score: Score, baseline: Score) -> dict:
    return {**score.as_dict(), "ratio": score.perplexity / baseline.perplexity}


def _validation_evidence(
    candidate: Candidate,
    plans: list[VariantPlan],
    scores: dict[str, Score],
    baseline: Score,
    eval_info: dict,
    architecture,
) -> tuple[str, dict]:
    mine = {p.kind: p for p in plans if p.candidate == candidate.key}
    controls = {p.kind: p for p in plans if p.candidate is None and p.layer == candidate.layer}
    ablate, restore = mine[Kind.ABLATE], mine[Kind.RESTORE]
    random, top = controls[Kind.RANDOM], controls[Kind.TOP_K]
    state, reason = validation.verdict(
        baseline.perplexity, scores[ablate.name].perplexity, scores[random.name].perplexity
    )
    evidence = {
        "eval": eval_info,
        "baseline": baseline.as_dict(),
        "ablated": _score_dict(scores[ablate.name], baseline),
        "restored": _score_dict(scores[restore.name], baseline),
        "controls": {
            "random": {
                **_score_dict(scores[random.name], baseline),
                "weights": len(random.zeroed),
                "seed": validation.CONTROL_SEED + candidate.layer,
            },
            "top_k": {
                **_score_dict(scores[top.name], baseline),
                "k": len(top.zeroed),
                "indices": [architecture.stored_index(r, c) for r, c in top.zeroed],
            },
        },
        "super_activation": {
            "ablated": ablate.super_activation,
            "restored": restore.super_activation,
        },
        "verdict": {"state": state, "reason": reason},
    }
    return state, evidence


def build_report(
    *,
    checkpoint: Checkpoint,
    tensor_names: dict[str, str],
    device: str,
    prompts: list[str],
    state: detection.DetectionState,
    plans: list[VariantPlan],
    scores: dict[str, Score] | None,
    baseline: Score | None,
    eval_text: EvalText | None,
    eval_windows: int,
    timings: dict,
    bytes_read: int,
) -> dict:
    architecture = checkpoint.architecture
    text_config = checkpoint.text_config()
    eval_info = None
    if eval_text is not None and baseline is not None:
        eval_info = {
            "path": _display_path(eval_text.path),
            "sha256": eval_text.sha256,
            "tokens": baseline.tokens + eval_windows,
            "windows": eval_windows,
        }
    super_weights = []
    for key in sorted(state.candidates):
        candidate = state.candidates[key]
        tensor = tensor_names[architecture.down_proj_param(candidate.layer)]
        evidence = {
            "rules": rules(),
            "prompts": prompts,
            "code_version": code_version(),
            "detection": _detection_evidence(candidate, len(prompts)),
        }
        verdict = "candidate"
        if scores is not None and baseline is not None:
            verdict, evidence["validation"] = _validation_evidence(
                candidate, plans, scores, baseline, eval_info, architecture
            )
        super_weights.append(
            {
                "tensor": tensor,
                "index": architecture.stored_index(candidate.row, candidate.col),
                "layer": candidate.layer,
                "module": architecture.down_proj,
                "row": candidate.row,
                "col": candidate.col,
                "value": candidate.value,
                "dtype": checkpoint.dtype_name(tensor),
                "state": verdict,
                "evidence": evidence,
            }
        )
    return {
        "model": {
            "path": str(checkpoint.path),
            "model_type": checkpoint.model_type,
            "architecture": (checkpoint.config.get("architectures") or [None])[0],
            "dtype": checkpoint.dtype_name(tensor_names[architecture.down_proj_param(0)]),
            "num_layers": len(state.profile),
            "d_model": text_config.get("hidden_size") or text_config.get("n_embd"),
            "d_ff": text_config.get("intermediate_size")
            or text_config.get("ffn_dim")
            or text_config.get("n_inner"),
            "weight_files": [f.as_dict() for f in checkpoint.weight_files],
            "weight_bytes": checkpoint.total_bytes,
        },
        "detector": {
            "name": "swreg",
            "version": code_version(),
            "device": device,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "rules": rules(),
        "prompts": prompts,
        "eval": eval_info,
        "profile": state.profile,
        "super_weights": super_weights,
        "timings": timings,
        "bytes_read": bytes_read,
    }
