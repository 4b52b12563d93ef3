"""Fine-tunes checked again when their base's verified super weights change.

A fine-tune's lineage check runs in its own analysis, against what the registry then holds of
its base (`lineage_base`). A fine-tune analysed before its base has none (the base had nothing
verified to check), and one checked against another revision of the base, or against another
set of its coordinates or super experts (a newer detector verified more), is out of date. So
when a worker records a revision with verified coordinates or super experts, each revision the
registry holds that names that model as its base (`base_model`), with an exact revision and a
check missing or out of date, is queued again: its analysis is what runs the check
(deterministic, it finds what it found before, and adds the check).

The jobs are submitted as RECHECK_SUBMITTER: under fair share (`queue.fair_seq_for`) they take
turns with every other submitter, so a base with a thousand fine-tunes in the registry holds
nobody up, and a revision already queued or running is not queued twice (`queue.enqueue`).
"""

from dataclasses import dataclass

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from registry.jobs import queue
from registry.jobs.models import Job, JobSource, JobState
from registry.settings import get_settings
from registry.superweights.models import ModelRevision
from registry.superweights.service import lineage_base
from workers.contract.lineage import LineageBase

# Who the re-check jobs are submitted by (a token's jobs are `token:NAME`, the CLI's `cli`).
RECHECK_SUBMITTER = "lineage"


@dataclass(frozen=True)
class Recheck:
    """A fine-tune revision queued again for its lineage check, and why (plain values: read
    after the transaction that queued it)."""

    job_id: int
    model_id: str
    revision: str
    created: bool
    reason: str


def out_of_date(check: dict | None, base: LineageBase) -> str | None:
    """Why a fine-tune's stored lineage `check` does not reflect `base` (None: it does)."""
    if check is None:
        return "no lineage check yet"
    if check.get("base_revision") != base.revision:
        return f"checked against {str(check.get('base_revision'))[:12]}, not {base.revision[:12]}"
    checked = {(c.get("tensor"), tuple(c.get("index") or ())) for c in check["coordinates"]}
    if checked != {(c.tensor, tuple(c.index)) for c in base.coordinates}:
        return "the base's verified coordinates changed"
    experts = {(e.get("layer"), e.get("expert")) for e in check.get("super_experts") or []}
    if experts != {(e.layer, e.expert) for e in base.super_experts}:
        return "the base's verified super experts changed"
    return None


def queue_rechecks(session: Session, base_model: str) -> list[Recheck]:
    """Queue a new analysis of each fine-tune of `base_model` whose lineage check is missing or
    out of date (see the module's docstring); call in the transaction that recorded the base's
    coordinates. Fine-tunes the registry cannot analyse again are left out: an imported revision
    (`unknown`), and a local folder no job of this registry has read."""
    # The columns the re-check needs, not the revisions with their coordinates.
    fine_tunes = session.execute(
        select(
            ModelRevision.model_id,
            ModelRevision.revision,
            ModelRevision.revision_kind,
            ModelRevision.lineage_check,
        )
        .where(ModelRevision.base_model == base_model, ModelRevision.revision_kind != "unknown")
        .order_by(ModelRevision.id)
    ).all()
    # Most bases have no fine-tune in the registry: their coordinates are not read at all.
    base = lineage_base(session, base_model) if fine_tunes else None
    if not base:
        return []
    rechecks = []
    for rev in fine_tunes:
        reason = out_of_date(rev.lineage_check, base)
        if reason is None:
            continue
        source, local_path = _source_of(session, rev)
        if source is None:
            continue
        job, created = queue.enqueue(
            session,
            model_id=rev.model_id,
            revision=rev.revision,
            source=source,
            local_path=local_path,
            max_attempts=get_settings().job_max_attempts,
            submitted_by=RECHECK_SUBMITTER,
            force=True,
        )
        session.flush()  # the new job's id
        rechecks.append(Recheck(job.id, rev.model_id, rev.revision, created, reason))
    return rechecks


def _source_of(session: Session, rev: Row) -> tuple[JobSource | None, str | None]:
    """Where a new job reads the revision from: the Hub for a commit, the folder the last job
    of these weights read for a local revision (None when there was none)."""
    if rev.revision_kind == "commit":
        return JobSource.HUB, None
    last = session.scalars(
        select(Job)
        .where(
            Job.model_id == rev.model_id,
            Job.revision == rev.revision,
            Job.source == JobSource.LOCAL,
            Job.local_path.is_not(None),
            Job.state == JobState.SUCCEEDED,
        )
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    if last is None:
        return None, None
    return JobSource.LOCAL, last.local_path
