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

What the outcomes mean: workers.contract.lineage. Why a merge (a card naming several bases) is
not checked: docs/method.md#lineage.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from workers.contract.lineage import (
    OUTCOME_OF_STATE,
    BaseCoordinate,
    LineageBase,
    LineageCheck,
    LineageCoordinate,
)
from workers.contract.progress import Progress
from workers.contract.report import EvalInfo, Report
from workers.science.checkpoint import Checkpoint
from workers.science.detection import Candidate
from workers.science.evaluation import stop_word_ids
from workers.science.pipeline.findings import LayerFindings, LayerSites
from workers.science.pipeline.steps import AnalysisOptions, OpenedJob, open_job
from workers.science.pipeline.sweep import Sweep, pad_id
from workers.science.report import Place, display_path, stored_place, validation_evidence
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


def check_lineage(
    report: Report,
    base: LineageBase,
    ablate: Callable[[list[BaseCoordinate]], list[LineageCoordinate]],
) -> LineageCheck:
    """The lineage check of the fine-tune `report` describes: each base coordinate from its
    detection where that decided it, the rest by `ablate` (`lineage_check` on the same weights,
    which a worker runs in a child process of its own), in the base's order."""
    decided = [judged_by_detection(report, c) for c in base.coordinates]
    rest = [c for c, found in zip(base.coordinates, decided, strict=True) if found is None]
    ablated = iter(ablate(rest) if rest else [])
    return LineageCheck(
        base_model=base.model_id,
        base_revision=base.revision,
        detector_version=report.detector.version,
        coordinates=[found if found is not None else next(ablated) for found in decided],
    )


def _where(coordinate: BaseCoordinate) -> dict:
    """The base coordinate's place, which its check repeats."""
    return coordinate.model_dump(
        include={"tensor", "index", "layer", "module", "row", "col", "expert"}
    )


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


class GivenSweep(Sweep):
    """The sweep with detection's findings replaced by given weights: as each layer goes by,
    the given weights in it are its candidates (their values read from the layer as loaded)."""

    def __init__(self, *args, given: dict[int, list[GivenCandidate]], **kwargs):
        super().__init__(*args, **kwargs)
        self.given = given

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
    coordinates: list[BaseCoordinate],
    options: AnalysisOptions | None = None,
    progress: Progress | None = None,
) -> list[LineageCoordinate]:
    """Each of the base's `coordinates` checked by ablation in the checkpoint at `model_dir` (a
    fine-tune), in the given order (see the module's docstring)."""
    options = replace(options or AnalysisOptions(), validate=True)
    staged = _staged(progress)
    job = open_job(model_dir, options, staged)
    streamer = LayerStreamer(job.checkpoint, job.options.device, head=True)
    out: list[LineageCoordinate | None] = [None] * len(coordinates)
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
        if not places:
            return [c for c in out if c is not None]
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
            streamer, prompts, windows, judge, stop_word_ids(job.tokenizer), staged, given=given
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
    return [c for c in out if c is not None]
