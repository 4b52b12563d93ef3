"""Building the detection report (`workers.contract.report.Report`) from what a pipeline found."""

import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
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
    ExpertProfile,
    ExpertValidation,
    LayerProfile,
    ModelInfo,
    Observation,
    RatioInterval,
    Report,
    ScoreVsBaseline,
    Selection,
    SuperActivationEvidence,
    SuperActivationWindow,
    SuperExpert,
    ValidationEvidence,
    ValidationRun,
    Verdict,
    WeightFile,
)
from workers.contract.report import (
    Score as ScoreOut,
)
from workers.contract.resources import DATA_DIR
from workers.contract.version import package_version
from workers.science import detection, experts
from workers.science.checkpoint import Checkpoint
from workers.science.context import ModelContext
from workers.science.detection import Candidate
from workers.science.evaluation import EvalText, Score
from workers.science.feed_forward import feed_forward_info
from workers.science.validation import judge as judge_rules
from workers.science.validation import selection as selection_rules
from workers.science.validation import statistics
from workers.science.validation import verdict as verdict_rule
from workers.science.validation.controls import CONTROLS, control_rules
from workers.science.validation.judge import CandidateJudgement, ExpertJudgement, Judge, VariantRun
from workers.science.validation.statistics import Interval
from workers.science.validation.verdict import State

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
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
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
        "interval_alpha": statistics.ALPHA,
        "interval_block_tokens": statistics.BLOCK_TOKENS,
        "max_ablations_per_layer": selection_rules.MAX_ABLATIONS_PER_LAYER,
        "restore_min_ratio": judge_rules.RESTORE_MIN_RATIO,
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


def _score_of(run: VariantRun) -> Score:
    return Score([run.scores[w] for w in sorted(run.scores)])


def _interval(interval: Interval) -> RatioInterval:
    return RatioInterval(
        low=interval.ratio_low,
        high=interval.ratio_high,
        confidence=interval.confidence,
        blocks=interval.blocks,
    )


def _versus(run: VariantRun, interval: Interval) -> dict:
    """A variant's score with its ratio to the baseline on the same tokens and its interval."""
    return {
        **_score_of(run).as_dict(),
        "ratio": interval.ratio,
        "interval": _interval(interval),
        "stopped_early": run.stopped_early,
    }


def _windows(run: VariantRun, row: int) -> list[SuperActivationWindow]:
    return [SuperActivationWindow(**w) for w in run.plan.super_activation.get(row, [])]


def validation_evidence(
    judged: CandidateJudgement,
    judge: Judge,
    baseline: Score,
    eval_info: EvalInfo,
    stored_index: Callable[[int, int], list[int]],
) -> ValidationEvidence:
    candidate = judged.candidate
    controls = {}
    for control in CONTROLS:
        run = judged.controls[control.name]
        controls[control.name] = ControlEvidence(
            **_versus(run, judged.control_intervals[control.name]),
            **control.details(run.plan.zeroed, candidate.layer, stored_index),
        )
    ablate, restore = judged.ablation, judged.restore
    assert ablate is not None and judged.ablation_interval is not None  # validated candidates only
    return ValidationEvidence(
        eval=eval_info,
        baseline=_score(baseline),
        ablated=ScoreVsBaseline(**_versus(ablate, judged.ablation_interval)),
        restored=ScoreVsBaseline(**_versus(restore, judge.interval(restore))) if restore else None,
        zeroed_with=[stored_index(r, c) for r, c in judged.zeroed_with],
        controls=controls,
        super_activation=SuperActivationEvidence(
            ablated=_windows(ablate, candidate.row),
            restored=_windows(restore, candidate.row) if restore else [],
        ),
        verdict=Verdict(state=judged.state, reason=judged.reason),
    )


def _model_info(
    checkpoint: Checkpoint, tensor_names: dict[str, str], expert_tensors: dict[str, tuple[str, ...]]
) -> ModelInfo:
    feed_forward = checkpoint.feed_forward
    first = feed_forward.first_parameter()
    stored = expert_tensors[first][0] if first in expert_tensors else tensor_names[first]
    return ModelInfo(
        path=str(checkpoint.path),
        model_type=checkpoint.model_type,
        architecture=(checkpoint.config.get("architectures") or [None])[0],
        dtype=checkpoint.dtype_name(stored),
        num_layers=feed_forward.num_layers,
        d_model=feed_forward.d_model,
        # The inner width as built (configs spell it many ways, some per layer: Gemma 3n).
        d_ff=feed_forward.first_site().inner,
        weight_files=[WeightFile(**f.as_dict()) for f in checkpoint.weight_files],
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
    judge: Judge | None  # None without validation
    baseline: Score | None
    eval_text: EvalText | None
    eval_windows: int
    eval_tokens: int  # tokens in the evaluation windows (the budget)
    window_tokens: int
    context: ModelContext
    rounds: int  # passes over the layers (streamed) or rounds of runs (naive)
    timings: dict[str, float]
    bytes_read: int
    # Fused expert parameter -> its stored per-expert tensors, by expert (checkpoints that store
    # one 2-D tensor per expert).
    expert_tensors: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Place:
    """Where a candidate is stored: its tensor, its index as stored, the module it is in."""

    tensor: str
    module: str
    stored_index: Callable[[int, int], list[int]]


def stored_place(
    checkpoint: Checkpoint,
    tensor_names: dict[str, str],
    expert_tensors: dict[str, tuple[str, ...]],
    layer: int,
    expert: int | None,
) -> Place:
    """Where the weights of layer `layer`'s output projection (of routed expert `expert`) are
    stored: the checkpoint's tensor and how (row, col) index it. `tensor_names` and
    `expert_tensors` are the streamer's (or the loaded model's) names for the checkpoint."""
    feed_forward = checkpoint.feed_forward
    if expert is None:
        site = feed_forward.matrix_site(layer)
        assert site is not None, f"a dense candidate in layer {layer} has a matrix to sit in"
        return Place(
            tensor_names[feed_forward.parameter(layer, site)],
            site.module,
            site.stored_index,
        )
    routed = feed_forward.routed_site(layer)
    assert routed is not None, f"an expert's candidate in layer {layer} has routed experts"
    site = routed  # bound for the lambda below (a narrowed name is not narrowed inside it)
    parameter = feed_forward.parameter(layer, site)
    module = f"{site.module}.{site.parameter}"
    per_expert = expert_tensors.get(parameter)
    if per_expert is not None:
        # One stored [out, in] tensor per expert.
        return Place(per_expert[expert], module, lambda r, c: [r, c])
    return Place(
        tensor_names[parameter],
        module,
        lambda r, c: experts.stored_index(site, expert, r, c),
    )


def _place(findings: Findings, layer: int, expert: int | None) -> Place:
    return stored_place(
        findings.checkpoint, findings.tensor_names, findings.expert_tensors, layer, expert
    )


def expert_validation(
    judged: ExpertJudgement, judge: Judge, baseline: Score, eval_info: EvalInfo
) -> dict:
    assert judged.pruned is not None and judged.pruned_interval is not None  # validated only
    controls = {
        f"random expert {i}": ControlEvidence(
            # extra="allow": each control adds fields of its own, here the expert it prunes
            **_versus(judged.controls[e], judged.control_intervals[e]),
            experts=[e],  # type: ignore[call-arg]
        )
        for i, e in enumerate(sorted(judged.control_intervals), start=1)
    }
    return ExpertValidation(
        eval=eval_info,
        baseline=_score(baseline),
        pruned=ScoreVsBaseline(**_versus(judged.pruned, judged.pruned_interval)),
        controls=controls,
        verdict=Verdict(state=judged.state, reason=judged.reason),
    ).as_json_dict()


def _super_experts(findings: Findings, eval_info: EvalInfo | None) -> list[SuperExpert]:
    state, judge, baseline = findings.state, findings.judge, findings.baseline
    feed_forward = findings.checkpoint.feed_forward
    judgements = judge.expert_judgements() if judge is not None else {}
    routed_tokens = {
        (entry["layer"], e["expert"]): e["tokens"]
        for entry in state.expert_profile
        for e in entry["experts"]
    }
    out = []
    for key in sorted(state.super_experts):
        candidate = state.super_experts[key]
        strongest = candidate.strongest
        judged = judgements.get(key)
        evidence: dict = {
            "prompts": len(findings.prompts),
            "detection": {"observations": candidate.observations},
        }
        state_: State = "candidate"
        if judged is not None and judged.pruned_interval is not None and baseline is not None:
            assert judge is not None and eval_info is not None  # a judgement comes from the judge
            evidence["validation"] = expert_validation(judged, judge, baseline, eval_info)
            state_ = judged.state
        routed = feed_forward.routed_site(candidate.layer)
        assert routed is not None  # a super expert is in a layer with routed experts
        out.append(
            SuperExpert(
                layer=candidate.layer,
                expert=candidate.expert,
                module=routed.module,
                state=state_,
                max_abs_output=strongest["max_abs_output"],
                spike_ratio=strongest["spike_ratio"],
                row=strongest["row"],
                tokens_routed=routed_tokens.get(key, 0),
                evidence=evidence,
            )
        )
    return out


def _selection(judged: CandidateJudgement) -> Selection:
    return Selection(
        rank=judged.rank,
        ranked=judged.ranked,
        spike_share=judged.spike_share,
        skipped=judged.skipped,
    )


def build_report(findings: Findings) -> Report:
    checkpoint, state, baseline, judge = (
        findings.checkpoint,
        findings.state,
        findings.baseline,
        findings.judge,
    )
    tensor_names, prompts = findings.tensor_names, findings.prompts
    feed_forward = checkpoint.feed_forward
    eval_info = None
    if findings.eval_text is not None and judge is not None:
        eval_info = EvalInfo(
            path=display_path(findings.eval_text.path),
            sha256=findings.eval_text.sha256,
            tokens=findings.eval_tokens,
            windows=findings.eval_windows,
            window_tokens=findings.window_tokens,
            context_tokens=findings.context.tokens,
            context_source=findings.context.source,
        )
    judgements = judge.judgements() if judge is not None else {}
    super_weights = []
    # Layer, then expert (a dense weight first), then row and column: numbers, not text.
    order = lambda key: (key[0], key[3] if len(key) > 3 else -1, key[1], key[2])  # noqa: E731
    for key in sorted(state.candidates, key=order):
        candidate = state.candidates[key]
        place = _place(findings, candidate.layer, candidate.expert)
        tensor = place.tensor
        judged = judgements.get(key)
        validation = None
        if judged is not None and judged.ablation_interval is not None and baseline is not None:
            assert judge is not None and eval_info is not None  # a judgement comes from the judge
            validation = validation_evidence(judged, judge, baseline, eval_info, place.stored_index)
        super_weights.append(
            Coordinate(
                tensor=tensor,
                index=place.stored_index(candidate.row, candidate.col),
                layer=candidate.layer,
                module=place.module,
                row=candidate.row,
                col=candidate.col,
                expert=candidate.expert,
                value=candidate.value,
                dtype=checkpoint.dtype_name(tensor),
                state=validation.verdict.state if validation else "candidate",
                evidence=Evidence(
                    rules=rules(),
                    prompts=prompts,
                    code_version=code_version(),
                    detection=_detection_evidence(candidate, len(prompts)),
                    selection=_selection(judged) if judged else None,
                    validation=validation,
                ),
            )
        )
    validation_run = None
    if judge is not None:
        validation_run = ValidationRun(
            mode="sequential" if judge.sequential else "exhaustive",
            variants=len(judge.runs),
            variant_tokens=judge.variant_tokens(),
            exhaustive_variant_tokens=judge.exhaustive_variant_tokens(
                findings.eval_tokens - findings.eval_windows
            ),
            rounds=findings.rounds,
        )
    return Report(
        model=_model_info(checkpoint, tensor_names, findings.expert_tensors),
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
        super_experts=_super_experts(findings, eval_info),
        expert_profile=[ExpertProfile(**entry) for entry in state.expert_profile],
        feed_forward=feed_forward_info(feed_forward),
        validation=validation_run,
        timings=findings.timings,
        bytes_read=findings.bytes_read,
    )
