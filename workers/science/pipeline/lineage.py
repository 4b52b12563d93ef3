"""The lineage check: the base model's verified super weights, each checked in a fine-tune's
weights by ablation, with detection's own validation (`validation.judge`: the weight zeroed, the
random and top-k controls of its tensor, the ratio's interval, the verdict rule).

A base coordinate that the fine-tune's own detection found and judged (verified or rejected at
the same tensor and index) needs nothing more: that ablation in the fine-tune is its check
(`judged_by_detection`). The others are ablated by `lineage_check`, a streamed sweep of the
fine-tune in which the given weights take detection's place: as each layer goes by, the base's
coordinates in it are planned as that layer's candidates (controls excluded from them), and the
rounds go on as a detection job's do until each verdict is decided. A weight the fine-tune does
not have where the base has it (no such layer or tensor, an index outside it) is `absent`.
`check_lineage` puts the two together in the base's order.

A mixture-of-experts base's verified super experts go the same way: one the fine-tune's own
detection judged (the same layer and expert) is taken from its report; the others are pruned in
the same sweep, each layer's given experts its super-expert candidates, against random experts
the fine-tune's router used in that layer (its report's expert profile), pruned alike.

What the outcomes mean: workers.contract.lineage. Why a merge (a card naming several bases) is
not checked: docs/method.md#lineage.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from workers.contract.lineage import (
    OUTCOME_OF_STATE,
    BaseCoordinate,
    BaseExpert,
    LineageBase,
    LineageCheck,
    LineageCoordinate,
    LineageExpert,
)
from workers.contract.progress import Progress
from workers.contract.report import EvalInfo, ExpertValidation, Report
from workers.science.checkpoint import Checkpoint
from workers.science.detection import Candidate, ExpertCandidate
from workers.science.evaluation import stop_word_ids
from workers.science.pipeline.findings import LayerFindings, LayerSites
from workers.science.pipeline.steps import AnalysisOptions, OpenedJob, open_job
from workers.science.pipeline.sweep import Sweep, pad_id
from workers.science.report import (
    Place,
    display_path,
    expert_validation,
    stored_place,
    validation_evidence,
)
from workers.science.streaming import LayerStreamer
from workers.science.validation.judge import Judge
from workers.science.validation.selection import MAX_ABLATIONS_PER_LAYER

# The progress stage the check reports (layers passed, as the sweep validates them).
STAGE = "lineage"
# Verdicts that say something about the weight (a `candidate` verdict from detection may be a
# skipped one, never ablated: the check ablates it itself).
_DECIDED = ("verified", "rejected")


@dataclass(eq=False)
class GivenCandidate(Candidate):
    """A weight the check is given (one of the base's coordinates), not one detection found
    here: no super activation was seen, so there is none to watch or to put back."""

    @property
    def threshold(self) -> float:
        return math.inf


@dataclass
class ToCheck:
    """What the lineage check's own sweep checks in a fine-tune: base coordinates and base super
    experts, with the experts the fine-tune's router used in each layer (from its report: the
    pool of the super experts' random controls)."""

    coordinates: list[BaseCoordinate]
    experts: list[BaseExpert] = field(default_factory=list)
    routed: dict[int, list[int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.coordinates or self.experts)


@dataclass
class Checked:
    """The checks of a ToCheck, in its order."""

    coordinates: list[LineageCoordinate] = field(default_factory=list)
    experts: list[LineageExpert] = field(default_factory=list)


def routed_experts(report: Report) -> dict[int, list[int]]:
    """Per MoE layer, the experts the router sent at least one token to (the report's expert
    profile)."""
    return {
        entry.layer: [e.expert for e in entry.experts if e.tokens > 0]
        for entry in report.expert_profile
    }


def judged_by_detection(report: Report, coordinate: BaseCoordinate) -> LineageCoordinate | None:
    """The check of `coordinate` from the fine-tune's own report: when its detection found the
    same weight (tensor and index) and validation decided it; None otherwise."""
    for sw in report.super_weights:
        validation = sw.evidence.validation
        if (sw.tensor, sw.index) != (coordinate.tensor, coordinate.index):
            continue
        if sw.state not in _DECIDED or validation is None:
            return None
        return LineageCoordinate(
            **_where(coordinate),
            outcome=OUTCOME_OF_STATE[sw.state],
            reason=validation.verdict.reason,
            checked_by="detection",
            value=sw.value,
            base_value=coordinate.value,
            ratio=validation.ablated.ratio,
            interval=validation.ablated.interval,
            base_ratio=coordinate.ratio,
            validation=validation,
        )
    return None


def expert_judged_by_detection(report: Report, base: BaseExpert) -> LineageExpert | None:
    """The check of the base's super expert from the fine-tune's own report: when its detection
    found the same (layer, expert) and pruning decided it; None otherwise."""
    for found in report.super_experts:
        if (found.layer, found.expert) != (base.layer, base.expert):
            continue
        stored = found.evidence.get("validation")
        if found.state not in _DECIDED or not stored:
            return None
        validation = ExpertValidation.model_validate(stored)
        return LineageExpert(
            **_expert_where(base),
            outcome=OUTCOME_OF_STATE[found.state],
            reason=validation.verdict.reason,
            checked_by="detection",
            ratio=validation.pruned.ratio,
            interval=validation.pruned.interval,
            base_ratio=base.ratio,
            validation=validation,
        )
    return None


def check_lineage(
    report: Report,
    base: LineageBase,
    ablate: Callable[[ToCheck], Checked],
) -> LineageCheck:
    """The lineage check of the fine-tune `report` describes: each base coordinate and super
    expert from its detection where that decided it, the rest by `ablate` (`lineage_check` on the
    same weights, which a worker runs in a child process of its own), in the base's order."""
    decided = [judged_by_detection(report, c) for c in base.coordinates]
    decided_experts = [expert_judged_by_detection(report, e) for e in base.super_experts]
    rest = ToCheck(
        [c for c, found in zip(base.coordinates, decided, strict=True) if found is None],
        [e for e, found in zip(base.super_experts, decided_experts, strict=True) if found is None],
        routed_experts(report),
    )
    checked = ablate(rest) if rest else Checked()
    ablated, pruned = iter(checked.coordinates), iter(checked.experts)
    return LineageCheck(
        base_model=base.model_id,
        base_revision=base.revision,
        detector_version=report.detector.version,
        coordinates=[found if found is not None else next(ablated) for found in decided],
        super_experts=[found if found is not None else next(pruned) for found in decided_experts]
        if base.super_experts
        else None,
    )


def _where(coordinate: BaseCoordinate) -> dict:
    """The base coordinate's place, which its check repeats."""
    return coordinate.model_dump(
        include={"tensor", "index", "layer", "module", "row", "col", "expert"}
    )


def _expert_where(expert: BaseExpert) -> dict:
    return expert.model_dump(include={"layer", "expert", "module"})


def _absent(coordinate: BaseCoordinate, reason: str) -> LineageCoordinate:
    return LineageCoordinate(
        **_where(coordinate),
        outcome="absent",
        reason=reason,
        base_value=coordinate.value,
        base_ratio=coordinate.ratio,
    )


def locate(
    checkpoint: Checkpoint, streamer: LayerStreamer, coordinate: BaseCoordinate
) -> Place | str:
    """Where the fine-tune stores the base's weight (layer, row, col, expert): its place, or why
    it has no such weight where the base has it."""
    feed_forward = checkpoint.feed_forward
    layer, expert = coordinate.layer, coordinate.expert
    if layer >= feed_forward.num_layers:
        return f"the fine-tune has {feed_forward.num_layers} layers: no layer {layer}"
    site = feed_forward.matrix_site(layer) if expert is None else feed_forward.routed_site(layer)
    if site is None:
        kind = "dense output projection" if expert is None else "routed experts"
        return f"layer {layer} of the fine-tune has no {kind}"
    stacked = {p: s.expert_names for p, s in streamer.stacked.items()}
    try:
        place = stored_place(checkpoint, streamer.names, stacked, layer, expert)
    except (IndexError, KeyError):
        return f"the fine-tune has no expert {expert} in layer {layer}"
    if place.tensor != coordinate.tensor:
        return f"the fine-tune stores it in {place.tensor}, not in {coordinate.tensor}"
    stored = place.stored_index(coordinate.row, coordinate.col)
    shape = checkpoint.tensor_shape.get(place.tensor, [])
    if len(stored) != len(shape) or any(i >= n for i, n in zip(stored, shape, strict=True)):
        return f"{place.tensor} of the fine-tune has shape {list(shape)}: no index {stored}"
    if stored != coordinate.index:
        return f"the fine-tune stores it at {stored}, not at {coordinate.index}"
    return place


def locate_expert(checkpoint: Checkpoint, expert: BaseExpert) -> str | None:
    """Why the fine-tune has no such super expert where the base has it (None: it has)."""
    feed_forward = checkpoint.feed_forward
    if expert.layer >= feed_forward.num_layers:
        return f"the fine-tune has {feed_forward.num_layers} layers: no layer {expert.layer}"
    site = feed_forward.routed_site(expert.layer)
    if site is None:
        return f"layer {expert.layer} of the fine-tune has no routed experts"
    if site.num_experts is not None and expert.expert >= site.num_experts:
        return (
            f"layer {expert.layer} of the fine-tune has {site.num_experts} experts: "
            f"no expert {expert.expert}"
        )
    return None


def _absent_expert(expert: BaseExpert, reason: str) -> LineageExpert:
    return LineageExpert(
        **_expert_where(expert), outcome="absent", reason=reason, base_ratio=expert.ratio
    )


class GivenSweep(Sweep):
    """The sweep with detection's findings replaced by given weights and experts: as each layer
    goes by, the given weights in it are its candidates (their values read from the layer as
    loaded), and the given experts its super-expert candidates, controlled by the experts the
    fine-tune's router used there (`routed`)."""

    def __init__(
        self,
        *args,
        given: dict[int, list[GivenCandidate]],
        experts: dict[int, list[ExpertCandidate]] | None = None,
        routed: dict[int, list[int]] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.given = given
        self.experts = experts or {}
        self.routed = routed or {}

    def _detect(
        self, sites: LayerSites, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, LayerFindings]:
        found = LayerFindings(sites.layer)
        for candidate in self.given.get(sites.layer, []):
            if candidate.expert is None:
                weight = sites.matrix_weight()
                found.dense.append(candidate)
            else:
                weight = sites.expert_weight(candidate.expert)
                found.routed.setdefault(candidate.expert, []).append(candidate)
            candidate.value = float(weight[candidate.row, candidate.col])
        found.super_experts = list(self.experts.get(sites.layer, []))
        if found.super_experts:
            found.routed_experts = self.routed.get(sites.layer, [])
        # The prompts do not pass the layer: nothing is detected here.
        return hidden, found


def _eval_info(job: OpenedJob) -> EvalInfo:
    assert job.eval_text is not None  # validation always opens the evaluation text
    return EvalInfo(
        path=display_path(job.eval_text.path),
        sha256=job.eval_text.sha256,
        tokens=sum(int(w.numel()) for w in job.windows),
        windows=len(job.windows),
        window_tokens=max((w.shape[1] for w in job.windows), default=0),
        context_tokens=job.context.tokens,
        context_source=job.context.source,
    )


def _staged(progress: Progress | None) -> Progress | None:
    """The sweep's progress as this check's one stage: layers passed while validating."""
    if progress is None:
        return None

    def report(stage: str, done: int, total: int) -> None:
        if stage == "validate":
            progress(STAGE, done, total)

    return report


def lineage_check(
    model_dir: Path | str,
    to_check: ToCheck,
    options: AnalysisOptions | None = None,
    progress: Progress | None = None,
) -> Checked:
    """Each of the base's coordinates and super experts in `to_check` checked by ablation in the
    checkpoint at `model_dir` (a fine-tune), in the given order (see the module's docstring)."""
    options = replace(options or AnalysisOptions(), validate=True)
    staged = _staged(progress)
    job = open_job(model_dir, options, staged)
    streamer = LayerStreamer(job.checkpoint, job.options.device, head=True)
    coordinates = to_check.coordinates
    out: list[LineageCoordinate | None] = [None] * len(coordinates)
    out_experts: list[LineageExpert | None] = [None] * len(to_check.experts)
    try:
        places: dict[int, Place] = {}
        candidates: dict[int, GivenCandidate] = {}
        given: dict[int, list[GivenCandidate]] = {}
        for i, coordinate in enumerate(coordinates):
            place = locate(job.checkpoint, streamer, coordinate)
            if isinstance(place, str):
                out[i] = _absent(coordinate, place)
                continue
            places[i] = place
            # Its value here is read as its layer goes by (GivenSweep).
            candidates[i] = GivenCandidate(
                coordinate.layer, coordinate.row, coordinate.col, math.nan, [], coordinate.expert
            )
            given.setdefault(coordinate.layer, []).append(candidates[i])
        expert_candidates: dict[int, ExpertCandidate] = {}
        given_experts: dict[int, list[ExpertCandidate]] = {}
        for i, expert in enumerate(to_check.experts):
            missing = locate_expert(job.checkpoint, expert)
            if missing is not None:
                out_experts[i] = _absent_expert(expert, missing)
                continue
            expert_candidates[i] = ExpertCandidate(expert.layer, expert.expert)
            given_experts.setdefault(expert.layer, []).append(expert_candidates[i])
        if not places and not expert_candidates:
            return _done(out, out_experts)
        judge = Judge(
            len(job.windows),
            sequential=job.options.sequential,
            restores=False,
            ablations_per_layer=max(MAX_ABLATIONS_PER_LAYER, len(places)),
        )
        # The sweep carries a prompt batch for detection; one prompt, never run here.
        ids, mask = streamer.padded(job.prompt_ids[:1], pad_id(job.tokenizer))
        prompts, *windows = streamer.capture_all(
            [ids, *job.windows], [mask] + [None] * len(job.windows)
        )
        sweep = GivenSweep(
            streamer,
            prompts,
            windows,
            judge,
            stop_word_ids(job.tokenizer),
            staged,
            given=given,
            experts=given_experts,
            routed=to_check.routed,
        )
        sweep.run()
        baseline = sweep.baseline_score()
    finally:
        streamer.close()
    judgements = judge.judgements()
    eval_info = _eval_info(job)
    for i, place in places.items():
        coordinate = coordinates[i]
        judged = judgements.get(candidates[i].key)
        common = {
            **_where(coordinate),
            "checked_by": "lineage",
            "value": candidates[i].value,
            "base_value": coordinate.value,
            "base_ratio": coordinate.ratio,
        }
        if judged is None or judged.ablation_interval is None:
            reason = "not validated" if judged is None else (judged.skipped or judged.reason)
            out[i] = LineageCoordinate(**common, outcome="undecided", reason=reason)
            continue
        evidence = validation_evidence(judged, judge, baseline, eval_info, place.stored_index)
        out[i] = LineageCoordinate(
            **common,
            outcome=OUTCOME_OF_STATE[judged.state],
            reason=judged.reason,
            ratio=evidence.ablated.ratio,
            interval=evidence.ablated.interval,
            validation=evidence,
        )
    expert_judgements = judge.expert_judgements()
    for i, candidate in expert_candidates.items():
        expert = to_check.experts[i]
        pruned = expert_judgements.get(candidate.key)
        common = {**_expert_where(expert), "checked_by": "lineage", "base_ratio": expert.ratio}
        if pruned is None or pruned.pruned_interval is None:
            reason = "not validated" if pruned is None else pruned.reason
            out_experts[i] = LineageExpert(**common, outcome="undecided", reason=reason)
            continue
        validation = ExpertValidation.model_validate(
            expert_validation(pruned, judge, baseline, eval_info)
        )
        out_experts[i] = LineageExpert(
            **common,
            outcome=OUTCOME_OF_STATE[pruned.state],
            reason=pruned.reason,
            ratio=validation.pruned.ratio,
            interval=validation.pruned.interval,
            validation=validation,
        )
    return _done(out, out_experts)


def _done(
    coordinates: list[LineageCoordinate | None], experts: list[LineageExpert | None]
) -> Checked:
    assert None not in coordinates and None not in experts  # each checked, or absent
    return Checked([c for c in coordinates if c is not None], [e for e in experts if e is not None])
