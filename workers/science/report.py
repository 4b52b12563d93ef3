"""Building the detection report (`workers.contract.report.Report`) from what a pipeline found."""

import platform
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import transformers

from workers.contract.report import (
    ControlEvidence,
    Coordinate,
    DetectionEvidence,
    Detector,
    EvalInfo,
    Evidence,
    LayerProfile,
    ModelInfo,
    Observation,
    Report,
    ScoreVsBaseline,
    SuperActivationEvidence,
    ValidationEvidence,
    Verdict,
)
from workers.contract.report import (
    Score as ScoreOut,
)
from workers.contract.resources import DATA_DIR
from workers.contract.version import package_version
from workers.science import detection
from workers.science.architectures import Architecture
from workers.science.checkpoint import Checkpoint
from workers.science.context import ModelContext
from workers.science.detection import Candidate
from workers.science.evaluation import EvalText, Score
from workers.science.validation import verdict as verdict_rule
from workers.science.validation.controls import CONTROLS, control_rules
from workers.science.validation.variants import Kind, VariantPlan

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@lru_cache
def code_version() -> str:
    """The package version, plus the git commit when the code runs from a git checkout."""
    version = package_version()
    if not (_SOURCE_ROOT / ".git").exists():
        return version
    try:
        sha = subprocess.run(
            ["git", "-C", str(_SOURCE_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{sha}" if sha else version


def display_path(path: Path) -> str:
    """The shipped evaluation text by its place in `data/`; any other file as given."""
    resolved = path.resolve()
    data = DATA_DIR.resolve()
    return f"data/{resolved.relative_to(data)}" if resolved.is_relative_to(data) else str(path)


def rules() -> dict[str, float]:
    return {
        "super_activation_ratio": detection.SUPER_ACTIVATION_RATIO,
        "within_layer_ratio": detection.WITHIN_LAYER_RATIO,
        "min_contribution_share": detection.MIN_CONTRIBUTION_SHARE,
        "min_perplexity_ratio": verdict_rule.MIN_PERPLEXITY_RATIO,
        **control_rules(),
    }


def _detection_evidence(candidate: Candidate, prompts: int) -> DetectionEvidence:
    seen_in = sorted({o.prompt for o in candidate.observations})
    return DetectionEvidence(
        prompts=prompts,
        seen_in_prompts=seen_in,
        stability=len(seen_in) / prompts,
        mean_share=sum(o.share for o in candidate.observations) / len(candidate.observations),
        observations=[Observation(**o.as_dict()) for o in candidate.observations],
    )


def _score(score: Score) -> ScoreOut:
    return ScoreOut(**score.as_dict())


def _versus(score: Score, baseline: Score) -> dict:
    return {**score.as_dict(), "ratio": score.perplexity / baseline.perplexity}


def _validation_evidence(
    candidate: Candidate,
    plans: list[VariantPlan],
    scores: dict[str, Score],
    baseline: Score,
    eval_info: EvalInfo,
    architecture: Architecture,
) -> ValidationEvidence:
    mine = {p.kind: p for p in plans if p.candidate == candidate.key}
    controls = {p.kind: p for p in plans if p.candidate is None and p.layer == candidate.layer}
    ablate, restore = mine[Kind.ABLATE], mine[Kind.RESTORE]
    control_evidence = {}
    for control in CONTROLS:
        plan = controls[Kind.control(control.name)]
        control_evidence[control.name] = ControlEvidence(
            **_versus(scores[plan.name], baseline),
            **control.details(plan.zeroed, candidate.layer, architecture.stored_index),
        )
    state, reason = verdict_rule.verdict(
        baseline.perplexity,
        scores[ablate.name].perplexity,
        {name: scores[controls[Kind.control(name)].name].perplexity for name in control_evidence},
    )
    return ValidationEvidence(
        eval=eval_info,
        baseline=_score(baseline),
        ablated=ScoreVsBaseline(**_versus(scores[ablate.name], baseline)),
        restored=ScoreVsBaseline(**_versus(scores[restore.name], baseline)),
        controls=control_evidence,
        super_activation=SuperActivationEvidence(
            ablated=ablate.super_activation, restored=restore.super_activation
        ),
        verdict=Verdict(state=state, reason=reason),
    )


def _model_info(checkpoint: Checkpoint, tensor_names: dict[str, str], num_layers: int) -> ModelInfo:
    text_config = checkpoint.text_config()
    architecture = checkpoint.architecture
    return ModelInfo(
        path=str(checkpoint.path),
        model_type=checkpoint.model_type,
        architecture=(checkpoint.config.get("architectures") or [None])[0],
        dtype=checkpoint.dtype_name(tensor_names[architecture.down_proj_param(0)]),
        num_layers=num_layers,
        d_model=text_config.get("hidden_size") or text_config.get("n_embd"),
        d_ff=text_config.get("intermediate_size")
        or text_config.get("ffn_dim")
        or text_config.get("n_inner"),
        weight_files=[f.as_dict() for f in checkpoint.weight_files],
        weight_bytes=checkpoint.total_bytes,
    )


@dataclass
class Findings:
    """What a pipeline found: the input of the report."""

    checkpoint: Checkpoint
    tensor_names: dict[str, str]  # model parameter name -> checkpoint tensor name
    device: str
    prompts: list[str]
    state: detection.DetectionState
    plans: list[VariantPlan]
    scores: dict[str, Score] | None
    baseline: Score | None
    eval_text: EvalText | None
    eval_windows: int
    window_tokens: int
    context: ModelContext
    timings: dict[str, float]
    bytes_read: int


def build_report(findings: Findings) -> Report:
    checkpoint, state, baseline = findings.checkpoint, findings.state, findings.baseline
    scores, tensor_names, prompts = findings.scores, findings.tensor_names, findings.prompts
    eval_text, eval_windows = findings.eval_text, findings.eval_windows
    architecture = checkpoint.architecture
    eval_info = None
    if eval_text is not None and baseline is not None:
        eval_info = EvalInfo(
            path=display_path(eval_text.path),
            sha256=eval_text.sha256,
            tokens=baseline.tokens + eval_windows,
            windows=eval_windows,
            window_tokens=findings.window_tokens,
            context_tokens=findings.context.tokens,
            context_source=findings.context.source,
        )
    super_weights = []
    for key in sorted(state.candidates):
        candidate = state.candidates[key]
        tensor = tensor_names[architecture.down_proj_param(candidate.layer)]
        validation = None
        if scores is not None and baseline is not None and eval_info is not None:
            validation = _validation_evidence(
                candidate, findings.plans, scores, baseline, eval_info, architecture
            )
        super_weights.append(
            Coordinate(
                tensor=tensor,
                index=architecture.stored_index(candidate.row, candidate.col),
                layer=candidate.layer,
                module=architecture.down_proj,
                row=candidate.row,
                col=candidate.col,
                value=candidate.value,
                dtype=checkpoint.dtype_name(tensor),
                state=validation.verdict.state if validation else "candidate",
                evidence=Evidence(
                    rules=rules(),
                    prompts=prompts,
                    code_version=code_version(),
                    detection=_detection_evidence(candidate, len(prompts)),
                    validation=validation,
                ),
            )
        )
    return Report(
        model=_model_info(checkpoint, tensor_names, len(state.profile)),
        detector=Detector(
            version=code_version(),
            device=findings.device,
            torch=torch.__version__,
            transformers=transformers.__version__,
            python=platform.python_version(),
        ),
        rules=rules(),
        prompts=prompts,
        eval=eval_info,
        profile=[LayerProfile(**entry) for entry in state.profile],
        super_weights=super_weights,
        timings=findings.timings,
        bytes_read=findings.bytes_read,
    )
