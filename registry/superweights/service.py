"""Reading and writing model revisions, their super-weight coordinates and their super experts.

Writers never delete: `record_report` upserts (re-recording a revision updates it in place),
`retract` marks a coordinate or a super expert retracted with a reason. Callers own the
transaction.
"""

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from registry.clock import as_utc, utcnow_seconds
from registry.errors import InvalidInput, NotFound
from registry.suggestions import did_you_mean
from registry.superweights.documents import (
    coordinate_sort_key,
    format_time,
    parse_number,
    profile_document,
    revision_document,
)
from registry.superweights.lineage import MAX_FINE_TUNES, lineage_document
from registry.superweights.models import (
    CLAIM_STATES,
    ModelRevision,
    SuperExpert,
    SuperWeight,
    index_key,
)
from registry.superweights.schemas import REVISION_PATTERN
from workers.contract.lineage import BaseCoordinate, BaseExpert, LineageBase, LineageCheck
from workers.contract.quantization import QuantizationCheck
from workers.contract.report import Report
from workers.sources.pinning import check_model_id

_REVISION_RE = re.compile(REVISION_PATTERN)
# How much of a hostile revision an error message repeats.
_SHOWN_CHARS = 80


# --- validation -------------------------------------------------------------------------------


def revision_kind_of(revision: str) -> str:
    """`commit` (40-hex sha), `content` (sha256:… of a local directory) or `unknown`."""
    if not isinstance(revision, str) or not _REVISION_RE.fullmatch(revision):
        shown = revision[:_SHOWN_CHARS] if isinstance(revision, str) else revision
        raise InvalidInput(
            f"invalid revision {shown!r}: expected a full 40-hex commit sha, "
            "sha256:<64 hex> or unknown"
        )
    if revision == "unknown":
        return "unknown"
    return "content" if revision.startswith("sha256:") else "commit"


Validated = TypeVar("Validated", bound=BaseModel)


def _validated(model: type[Validated], value: Validated | dict, what: str) -> Validated:
    """`value` as `model` (a dict validated); InvalidInput naming the first error's place."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "/".join(str(p) for p in err["loc"])
        raise InvalidInput(f"invalid {what} at /{where}: {err['msg']}") from None


# --- upserts ----------------------------------------------------------------------------------


def _same(current: Any, wanted: Any) -> bool:
    if isinstance(current, datetime) and isinstance(wanted, datetime):
        return as_utc(current) == as_utc(wanted)
    return current == wanted


def apply_fields(
    obj: Any,
    values: dict[str, Any],
    *,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> bool:
    """Set the fields that differ; bump `updated_at` (or set the given one) when any did.

    Returns whether anything changed, so that recording the same thing twice is a no-op."""
    changed = False
    for name, wanted in values.items():
        if not _same(getattr(obj, name), wanted):
            setattr(obj, name, wanted)
            changed = True
    if created_at is not None and not _same(obj.created_at, created_at):
        obj.created_at = created_at
        changed = True
    if updated_at is not None:
        if not _same(obj.updated_at, updated_at):
            obj.updated_at = updated_at
            changed = True
    elif changed:
        obj.updated_at = utcnow_seconds()
    return changed


def find_revision(session: Session, model_id: str, revision: str) -> ModelRevision | None:
    return session.scalar(
        select(ModelRevision).where(
            ModelRevision.model_id == model_id, ModelRevision.revision == revision
        )
    )


def upsert_revision(
    session: Session,
    *,
    model_id: str,
    revision: str,
    fields: dict[str, Any],
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> tuple[ModelRevision, bool]:
    """The revision row, created or brought up to date; and whether it was created."""
    check_model_id(model_id)
    kind = revision_kind_of(revision)
    rev = find_revision(session, model_id, revision)
    created = rev is None
    if rev is None:
        now = utcnow_seconds()
        rev = ModelRevision(
            model_id=model_id,
            revision=revision,
            revision_kind=kind,
            weight_files=[],
            created_at=created_at or now,
            updated_at=updated_at or created_at or now,
        )
        session.add(rev)
        apply_fields(rev, fields, updated_at=rev.updated_at)
    else:
        apply_fields(rev, fields, created_at=created_at, updated_at=updated_at)
    return rev, created


def find_coordinate(rev: ModelRevision, tensor: str, index: list[int]) -> SuperWeight | None:
    key = index_key(index)
    for sw in rev.super_weights:
        if sw.tensor == tensor and sw.index_key == key:
            return sw
    return None


def upsert_coordinate(
    rev: ModelRevision,
    fields: dict[str, Any],
    *,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> tuple[SuperWeight, str]:
    """The coordinate row, created or updated; and "created", "updated" or "unchanged"."""
    fields = {**fields, "index": [int(i) for i in fields["index"]]}
    fields["index_key"] = index_key(fields["index"])
    sw = find_coordinate(rev, fields["tensor"], fields["index"])
    if sw is None:
        now = utcnow_seconds()
        sw = SuperWeight(
            evidence={},
            reproduced_in=[],
            created_at=created_at or now,
            updated_at=updated_at or created_at or now,
        )
        apply_fields(sw, fields, updated_at=sw.updated_at)
        rev.super_weights.append(sw)
        return sw, "created"
    changed = apply_fields(sw, fields, created_at=created_at, updated_at=updated_at)
    return sw, "updated" if changed else "unchanged"


def find_super_expert(rev: ModelRevision, layer: int, expert: int) -> SuperExpert | None:
    for se in rev.super_experts:
        if se.layer == layer and se.expert == expert:
            return se
    return None


def upsert_super_expert(
    rev: ModelRevision,
    fields: dict[str, Any],
    *,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> tuple[SuperExpert, str]:
    """The super expert's row, created or updated; and "created", "updated" or "unchanged"."""
    se = find_super_expert(rev, fields["layer"], fields["expert"])
    if se is None:
        now = utcnow_seconds()
        se = SuperExpert(
            evidence={},
            sources=[],
            disputed_with=[],
            reproduced_in=[],
            created_at=created_at or now,
            updated_at=updated_at or created_at or now,
        )
        apply_fields(se, fields, updated_at=se.updated_at)
        rev.super_experts.append(se)
        return se, "created"
    changed = apply_fields(se, fields, created_at=created_at, updated_at=updated_at)
    return se, "updated" if changed else "unchanged"


# --- the workers' entry point -----------------------------------------------------------------


def record_report(
    session: Session,
    *,
    model_id: str,
    revision: str,
    revision_kind: str,
    report: Report | dict,
    base_model: str | None = None,
    lineage_check: LineageCheck | dict | None = None,
) -> ModelRevision:
    """Store what `swreg detect --json` found for one model revision.

    Idempotent: recording the same revision again updates its rows, never duplicates them.
    A coordinate that was retracted stays retracted (a person's verdict outranks a rerun). When a
    coordinate is `verified` and the same (model_id, tensor, index) is a published or reported
    coordinate (revision `unknown`), that row keeps its state and gets this revision appended to
    its `reproduced_in` list.

    `base_model` (the base the revision's model card names) and `lineage_check` (its base's
    verified coordinates checked in these weights: workers.contract.lineage) are stored with the
    revision when given; a later job that gives none leaves them as they are.
    """
    expected_kind = revision_kind_of(revision)
    if revision_kind != expected_kind:
        raise InvalidInput(
            f"revision kind {revision_kind!r} does not match revision {revision!r} "
            f"(expected {expected_kind!r})"
        )
    if expected_kind == "unknown":
        raise InvalidInput("a detection report needs an exact revision, not 'unknown'")
    parsed = _validated(Report, report, "detection report")

    lineage = _lineage_fields(model_id, base_model, lineage_check)
    model = parsed.model
    rev, _ = upsert_revision(
        session,
        model_id=model_id,
        revision=revision,
        fields={
            "architecture": model.architecture,
            "dtype": model.dtype,
            "num_layers": model.num_layers,
            "weight_files": [f.model_dump(exclude_none=False) for f in model.weight_files],
            "profile": profile_document(parsed),
            **lineage,
        },
    )
    seen: set[tuple[str, str]] = set()
    for coord in parsed.super_weights:
        key = (coord.tensor, index_key(coord.index))
        if key in seen:
            raise InvalidInput(f"detection report lists {coord.tensor} {coord.index} twice")
        seen.add(key)
        existing = find_coordinate(rev, coord.tensor, coord.index)
        if existing is not None and existing.state == "retracted":
            continue
        upsert_coordinate(
            rev,
            {
                "tensor": coord.tensor,
                "index": coord.index,
                "layer": coord.layer,
                "module": coord.module,
                "row": coord.row,
                "col": coord.col,
                "expert": coord.expert,
                "value": coord.value,
                "dtype": coord.dtype,
                "state": coord.state,
                "evidence": coord.evidence.as_json_dict(),
                "detector_version": parsed.detector.version,
            },
        )
        if coord.state == "verified":
            _mark_reproduced(session, model_id, coord.tensor, coord.index, revision)
    _record_super_experts(session, rev, parsed, model_id)
    session.flush()
    return rev


def _lineage_fields(
    model_id: str, base_model: str | None, lineage_check: LineageCheck | dict | None
) -> dict[str, Any]:
    """What a report's revision stores of its lineage: the base model (a valid id that is not
    the model itself) and the lineage check of that base (validated), each only when given."""
    fields: dict[str, Any] = {}
    if base_model is not None:
        check_model_id(base_model)
        if base_model == model_id:
            raise InvalidInput(f"{model_id} cannot be its own base model")
        fields["base_model"] = base_model
    if lineage_check is not None:
        parsed = _validated(LineageCheck, lineage_check, "lineage check")
        if parsed.base_model != fields.get("base_model", parsed.base_model):
            raise InvalidInput(
                f"the lineage check is of {parsed.base_model}, not of the base model {base_model}"
            )
        fields["lineage_check"] = parsed.as_json_dict()
    return fields


def lineage_base(session: Session, base_model: str) -> LineageBase | None:
    """What a fine-tune of `base_model` is checked against: the base's most recently updated
    revision that has verified coordinates (or verified super experts), with those coordinates
    (layer, expert, tensor and index order) and super experts (layer and expert order); None when
    the registry holds none. Published coordinates (revision `unknown`) never: they may belong
    to other weights."""
    check_model_id(base_model)
    verified = select(SuperWeight.revision_id).where(SuperWeight.state == "verified")
    verified_experts = select(SuperExpert.revision_id).where(SuperExpert.state == "verified")
    rev = session.scalars(
        select(ModelRevision)
        .where(
            ModelRevision.model_id == base_model,
            ModelRevision.revision_kind != "unknown",
            or_(ModelRevision.id.in_(verified), ModelRevision.id.in_(verified_experts)),
        )
        .order_by(ModelRevision.updated_at.desc(), ModelRevision.id.desc())
        .limit(1)
    ).first()
    if rev is None:
        return None
    coordinates = [
        BaseCoordinate(
            tensor=sw.tensor,
            index=list(sw.index),
            layer=sw.layer,
            module=sw.module,
            row=sw.row,
            col=sw.col,
            expert=sw.expert,
            value=sw.value,
            ratio=_evidence_ratio(sw, "ablated"),
        )
        for sw in sorted(rev.super_weights, key=coordinate_sort_key)
        if sw.state == "verified"
    ]
    experts = [
        BaseExpert(
            layer=e.layer, expert=e.expert, module=e.module, ratio=_evidence_ratio(e, "pruned")
        )
        for e in sorted(rev.super_experts, key=lambda e: (e.layer, e.expert))
        if e.state == "verified"
    ]
    return LineageBase(
        model_id=base_model, revision=rev.revision, coordinates=coordinates, super_experts=experts
    )


def _evidence_ratio(row: SuperWeight | SuperExpert, variant: str) -> float | None:
    """How many times the validation's `variant` (`ablated`: a coordinate zeroed, `pruned`: a
    super expert pruned) multiplied perplexity, from the row's evidence; None when the evidence
    does not say (evidence an index imported is any JSON object)."""
    validation = (row.evidence or {}).get("validation")
    ablated = validation.get(variant) if isinstance(validation, dict) else None
    ratio = ablated.get("ratio") if isinstance(ablated, dict) else None
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | str):
        return None
    try:
        return parse_number(ratio)
    except ValueError:
        return None


def _record_super_experts(
    session: Session, rev: ModelRevision, report: Report, model_id: str
) -> None:
    """The report's super experts, upserted like its coordinates: a retracted one stays
    retracted, and a verified one marks the same (layer, expert) claimed by a source (revision
    `unknown`) as reproduced at this revision."""
    seen: set[tuple[int, int]] = set()
    for found in report.super_experts:
        key = (found.layer, found.expert)
        if key in seen:
            raise InvalidInput(
                f"detection report lists super expert {found.expert} of layer {found.layer} twice"
            )
        seen.add(key)
        existing = find_super_expert(rev, found.layer, found.expert)
        if existing is not None and existing.state == "retracted":
            continue
        upsert_super_expert(
            rev,
            {
                "layer": found.layer,
                "expert": found.expert,
                "module": found.module,
                "state": found.state,
                "max_abs_output": found.max_abs_output,
                "spike_ratio": found.spike_ratio,
                "row": found.row,
                "tokens_routed": found.tokens_routed,
                "evidence": found.as_json_dict()["evidence"],
                "detector_version": report.detector.version,
            },
        )
        if found.state == "verified":
            _mark_expert_reproduced(session, model_id, found.layer, found.expert, rev.revision)


def _mark_expert_reproduced(
    session: Session, model_id: str, layer: int, expert: int, revision: str
) -> None:
    published = find_revision(session, model_id, "unknown")
    se = None if published is None else find_super_expert(published, layer, expert)
    if se is None or se.state not in CLAIM_STATES or revision in (se.reproduced_in or []):
        return
    apply_fields(se, {"reproduced_in": sorted([*(se.reproduced_in or []), revision])})


def record_quantization_check(
    session: Session, rev: ModelRevision, check: QuantizationCheck | dict
) -> ModelRevision:
    """Store a quantization check of a revision's weights (`swreg quantize-check`, run by a job)
    with the revision; a later check replaces it."""
    parsed = _validated(QuantizationCheck, check, "quantization check")
    apply_fields(rev, {"quantization_check": parsed.as_json_dict()})
    session.flush()
    return rev


def _mark_reproduced(
    session: Session, model_id: str, tensor: str, index: list[int], revision: str
) -> None:
    published = find_revision(session, model_id, "unknown")
    if published is None:
        return
    sw = find_coordinate(published, tensor, index)
    if sw is None or sw.state not in CLAIM_STATES or revision in (sw.reproduced_in or []):
        return
    # A new list (not an in-place append) so that SQLAlchemy sees the JSON change.
    apply_fields(sw, {"reproduced_in": sorted([*(sw.reproduced_in or []), revision])})


Retractable = TypeVar("Retractable", SuperWeight, SuperExpert)


def retract(session: Session, coordinate: Retractable, reason: str) -> Retractable:
    """Mark a coordinate or a super expert wrong. The row stays, with the reason and the time."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a retraction needs a reason")
    if coordinate.state == "retracted":
        return coordinate
    now = utcnow_seconds()
    apply_fields(
        coordinate,
        {"state": "retracted", "retraction_reason": reason, "retracted_at": now},
        updated_at=now,
    )
    session.flush()
    return coordinate


def get_revision(session: Session, model_id: str, revision: str) -> ModelRevision:
    revision_kind_of(revision)
    rev = find_revision(session, model_id, revision)
    if rev is None:
        raise NotFound(f"no revision {revision} of {model_id} in the registry")
    return rev


def parse_index(text: str) -> list[int]:
    """A coordinate's index as written in a URL or on the command line: "507,1229"."""
    try:
        index = [int(part) for part in text.split(",")]
    except ValueError:
        raise InvalidInput(f"invalid index {text!r}: expected integers like 507,1229") from None
    if not 1 <= len(index) <= 4 or any(i < 0 for i in index):
        raise InvalidInput(f"invalid index {text!r}: expected 1 to 4 integers >= 0")
    return index


def get_coordinate(
    session: Session, model_id: str, revision: str, tensor: str, index: list[int]
) -> SuperWeight:
    check_model_id(model_id)
    revision_kind_of(revision)
    rev = find_revision(session, model_id, revision)
    sw = None if rev is None else find_coordinate(rev, tensor, index)
    if sw is None:
        raise NotFound(f"no coordinate {tensor} {list(index)} for {model_id} at {revision}")
    return sw


def get_super_expert(
    session: Session, model_id: str, revision: str, layer: int, expert: int
) -> SuperExpert:
    check_model_id(model_id)
    revision_kind_of(revision)
    rev = find_revision(session, model_id, revision)
    se = None if rev is None else find_super_expert(rev, layer, expert)
    if se is None:
        raise NotFound(f"no super expert {expert} of layer {layer} for {model_id} at {revision}")
    return se


# --- reads ------------------------------------------------------------------------------------


def lookup(session: Session, model_id: str, revision: str | None = None) -> list[ModelRevision]:
    """The revisions of a model (one when `revision` is given), sorted by revision."""
    check_model_id(model_id)
    if revision is not None:
        revision_kind_of(revision)
    query = select(ModelRevision).where(ModelRevision.model_id == model_id)
    if revision is not None:
        query = query.where(ModelRevision.revision == revision)
    revisions = sorted(session.scalars(query), key=lambda r: r.revision)
    if not revisions:
        if revision is not None and session.scalar(
            select(ModelRevision.id).where(ModelRevision.model_id == model_id).limit(1)
        ):
            raise NotFound(f"model {model_id} has no revision {revision} in the registry")
        known = session.scalars(select(ModelRevision.model_id).distinct())
        raise NotFound(f"model not in the registry: {model_id}{did_you_mean(model_id, known)}")
    return revisions


def revisions_at(session: Session, revision: str) -> list[ModelRevision]:
    """Every model revision recorded at `revision`, under any model id, sorted by model id.
    `NotFound` when there is none."""
    revision_kind_of(revision)
    found = sorted(
        session.scalars(select(ModelRevision).where(ModelRevision.revision == revision)),
        key=lambda r: r.model_id,
    )
    if not found:
        raise NotFound(f"no model revision {revision} in the registry")
    return found


def revisions_at_document(session: Session, revision: str) -> dict:
    return {
        "revision": revision,
        "revisions": [revision_document(r) for r in revisions_at(session, revision)],
    }


def lookup_document(session: Session, model_id: str, revision: str | None = None) -> dict:
    """The lookup answer, shared by the HTTP API and `swreg lookup --json`: the revisions and
    the model's lineage (the bases they name, the fine-tunes that name it)."""
    revisions = [revision_document(r) for r in lookup(session, model_id, revision)]
    total, fine_tuned = fine_tune_revisions(session, model_id)
    return {
        "model_id": model_id,
        "revisions": revisions,
        "lineage": lineage_document(revisions, fine_tuned, total),
    }


def known_models(session: Session, model_ids: Iterable[str]) -> set[str]:
    """Those of `model_ids` the registry holds a revision of."""
    wanted = set(model_ids)
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(ModelRevision.model_id).where(ModelRevision.model_id.in_(wanted)).distinct()
        )
    )


def fine_tune_revisions(
    session: Session, model_id: str, limit: int = MAX_FINE_TUNES
) -> tuple[int, list[dict[str, Any]]]:
    """How many models name `model_id` as their base, and the revisions that name it of the
    first `limit` of them by id (model_id, revision, updated_at, lineage_check: what
    `lineage_document` reads; the coordinates are not loaded)."""
    names_it = ModelRevision.base_model == model_id
    total = session.scalar(
        select(func.count(func.distinct(ModelRevision.model_id))).where(names_it)
    )
    if not total:
        return 0, []
    first = list(
        session.scalars(
            select(ModelRevision.model_id)
            .where(names_it)
            .group_by(ModelRevision.model_id)
            .order_by(binary_order(session, ModelRevision.model_id))
            .limit(limit)
        )
    )
    rows = session.execute(
        select(
            ModelRevision.model_id,
            ModelRevision.revision,
            ModelRevision.updated_at,
            ModelRevision.lineage_check,
        ).where(names_it, ModelRevision.model_id.in_(first))
    )
    return total, [
        {
            "model_id": found,
            "revision": rev,
            "updated_at": format_time(updated),
            "lineage_check": check,
        }
        for found, rev, updated, check in rows
    ]


def binary_order(session: Session, column):
    # Sort by code point on every backend so that pages come out the same on SQLite and
    # PostgreSQL (whose default collation would sort by locale).
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


def _containing(text: str):
    """Model ids that contain `text`, case-insensitively (LIKE wildcards in it are literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ModelRevision.model_id.ilike(f"%{escaped}%", escape="\\")


class ModelsPage(NamedTuple):
    total: int
    items: list[dict[str, Any]]
    # The cursor of the page after this one (its last model id); None on the last page.
    next: str | None


def check_model_cursor(after: str) -> str:
    """A model list's cursor (`after`): the `next` of a page, which is a model id."""
    try:
        return check_model_id(after)
    except InvalidInput:
        raise InvalidInput(
            f"invalid cursor after={after[:_SHOWN_CHARS]!r}: expected the `next` of a page "
            "(a model id such as huggyllama/llama-7b)"
        ) from None


# The number of models (matching a search) at a data version: counting them reads every revision
# (tens of milliseconds at 10^5 models), while a page read by key reads one page; a reader paging
# through the list asks the same count on every page. Keyed by (database, epoch, data version,
# search): a write makes a new key. At most this many counts are kept.
_MODEL_COUNTS_KEPT = 256
_model_counts: dict[tuple[str, str, int, str | None], int] = {}


def _model_count(session: Session, search: str | None, where: list) -> int:
    from registry.data_version import current_epoch, current_version

    key = (
        str(session.get_bind().engine.url),
        current_epoch(session),
        current_version(session),
        search,
    )
    count = _model_counts.get(key)
    if count is None:
        query = select(func.count(func.distinct(ModelRevision.model_id))).where(*where)
        count = session.scalar(query) or 0
        if len(_model_counts) >= _MODEL_COUNTS_KEPT:
            _model_counts.clear()
        _model_counts[key] = count
    return count


def list_models(
    session: Session,
    *,
    limit: int = 50,
    offset: int = 0,
    after: str | None = None,
    search: str | None = None,
) -> ModelsPage:
    """One page of model ids (those containing `search`, when given) with their revisions and
    coordinate counts per state, in binary order: those after the model id `after` (a page's
    `next`: read by key, as fast deep in the list as at its start), skipping `offset` more (the
    deprecated way, which reads and drops every skipped id)."""
    where = [_containing(search)] if search else []
    total = _model_count(session, search, where)
    order = binary_order(session, ModelRevision.model_id)
    if after is not None:
        where.append(order > check_model_cursor(after))
    found = list(
        session.scalars(
            # Read, grouped and sorted as one expression: PostgreSQL's binary index (0014)
            # then serves the whole page, as fast deep in the list as at its start.
            select(order)
            .where(*where)
            .group_by(order)
            .order_by(order)
            .limit(limit + 1)  # one more: whether there is a next page
            .offset(offset)
        )
    )
    page_ids = found[:limit]
    following = page_ids[-1] if len(found) > limit else None
    if not page_ids:
        return ModelsPage(total, [], None)
    revisions: dict[str, list[str]] = {m: [] for m in page_ids}
    for model_id, revision in session.execute(
        select(ModelRevision.model_id, ModelRevision.revision).where(
            ModelRevision.model_id.in_(page_ids)
        )
    ):
        revisions[model_id].append(revision)
    states: dict[str, Counter] = {m: Counter() for m in page_ids}
    for model_id, state, count in session.execute(
        select(ModelRevision.model_id, SuperWeight.state, func.count())
        .join(SuperWeight.model_revision)
        .where(ModelRevision.model_id.in_(page_ids))
        .group_by(ModelRevision.model_id, SuperWeight.state)
    ):
        states[model_id][state] = count
    items = [
        {
            "model_id": m,
            "revisions": sorted(revisions[m]),
            "super_weights": sum(states[m].values()),
            "states": dict(sorted(states[m].items())),
        }
        for m in page_ids
    ]
    return ModelsPage(total, items, following)


def models_page(
    session: Session,
    *,
    limit: int = 50,
    offset: int = 0,
    after: str | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    """One page of `list_models` as a document: the HTTP model list and `swreg list --json`."""
    page = list_models(session, limit=limit, offset=offset, after=after, search=search)
    return {
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "items": page.items,
        "next": page.next,
    }


def all_revisions(session: Session) -> Iterable[ModelRevision]:
    return session.scalars(select(ModelRevision))


def last_change(session: Session) -> datetime | None:
    """When what the registry serves last changed: the latest time stamped on a model revision
    or a coordinate (created, updated, retracted); None for an empty registry. Computed from the
    data, so an export → import → export round trip gives the same answer."""
    times = [
        session.scalar(select(func.max(column)))
        for column in (
            ModelRevision.created_at,
            ModelRevision.updated_at,
            SuperWeight.created_at,
            SuperWeight.updated_at,
            SuperWeight.retracted_at,
            SuperExpert.created_at,
            SuperExpert.updated_at,
            SuperExpert.retracted_at,
        )
    ]
    present = [as_utc(t) for t in times if t is not None]
    return max(present) if present else None
