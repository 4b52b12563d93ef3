"""Tables: one row per model revision, one row per super-weight coordinate in it, and one row per
super expert (a routed expert of a mixture-of-experts layer, named by (layer, expert)).

Nothing is ever deleted: a wrong coordinate is retracted (state `retracted` plus a reason).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from registry.clock import utcnow_seconds
from registry.data_version import on_bump, track
from registry.database import Base, JSONType, one_of
from registry.index.document import index_key  # noqa: F401 (the unique column's key, named here)

# Indexes only the migrations make, on PostgreSQL alone, which the models cannot declare in a
# form autogenerate compares: `model_id COLLATE "C"` (migration 0014: lists page by model id in
# binary order, which PostgreSQL's locale-ordered index on model_id cannot serve; SQLite's index
# is already in that order). Left out of the models-match-migrations comparison by name.
MIGRATION_ONLY_INDEXES = frozenset({"ix_model_revisions_model_id_binary"})


def compared_by_autogenerate(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's `include_object`: everything but MIGRATION_ONLY_INDEXES."""
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)


REVISION_KINDS = ("commit", "content", "unknown")
STATES = ("published", "reported", "candidate", "verified", "rejected", "retracted")
# Coordinates that sources state and swreg has not checked at that revision: `published` by the
# paper's authors (the paper or their code), `reported` by other public work.
CLAIM_STATES = ("published", "reported")
# What the last write to a revision did (the changes feed): it created the revision, changed it
# or what it holds, or retracted one of its coordinates or super experts.
CHANGE_KINDS = ("added", "updated", "retracted")


class ModelRevision(Base):
    """A model repository at one exact revision: the weights a coordinate refers to."""

    __tablename__ = "model_revisions"
    __table_args__ = (
        UniqueConstraint("model_id", "revision"),
        CheckConstraint(f"revision_kind IN {one_of(REVISION_KINDS)}", name="revision_kind"),
        # The changes feed's key: (changed_version, id).
        Index("ix_model_revisions_changed", "changed_version", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255), index=True)
    # 40-hex commit sha, "sha256:<64 hex>" for a local directory, or "unknown" (published index).
    revision: Mapped[str] = mapped_column(String(80))
    revision_kind: Mapped[str] = mapped_column(String(16))
    architecture: Mapped[str | None] = mapped_column(String(255))
    dtype: Mapped[str | None] = mapped_column(String(32))
    num_layers: Mapped[int | None] = mapped_column(Integer)
    weight_files: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # The per-layer profile of the detection run that recorded this revision (prompts, the
    # super-activation ratio, one entry per layer; `documents.profile_document`); null for
    # revisions no detector ran on (the published index).
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The quantization check of these weights (workers.contract.quantization), when a job ran it.
    quantization_check: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The base model the revision's model card names (`base_model:` of README.md at this
    # revision; null when it names none, several, or an invalid id), and the lineage check of
    # that base's verified super weights in these weights (workers.contract.lineage), when a
    # job ran it.
    base_model: Mapped[str | None] = mapped_column(String(255), index=True)
    lineage_check: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow_seconds)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow_seconds)
    # The changes feed (registry.changes): the data version of the write that created this
    # revision, of the last write to it or to its coordinates or super experts, and what that
    # write did (CHANGE_KINDS). Stamped by registry.changes.stamp in the writing transaction.
    created_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    changed_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_change: Mapped[str] = mapped_column(String(16), default="added", server_default="added")

    super_weights: Mapped[list["SuperWeight"]] = relationship(
        back_populates="model_revision", cascade="save-update, merge", lazy="selectin"
    )
    super_experts: Mapped[list["SuperExpert"]] = relationship(
        back_populates="model_revision", cascade="save-update, merge", lazy="selectin"
    )


class SuperWeight(Base):
    """One scalar of a checkpoint, named as the checkpoint stores it, with its verdict."""

    __tablename__ = "super_weights"
    __table_args__ = (
        # `index_key` is the canonical text of `index` ("3968,7003"): JSON columns cannot take
        # part in a unique constraint portably.
        UniqueConstraint("revision_id", "tensor", "index_key"),
        CheckConstraint(f"state IN {one_of(STATES)}", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(
        ForeignKey("model_revisions.id", ondelete="RESTRICT"), index=True
    )
    tensor: Mapped[str] = mapped_column(String(255))
    index: Mapped[list[int]] = mapped_column(JSONType)
    index_key: Mapped[str] = mapped_column(String(64))
    layer: Mapped[int] = mapped_column(Integer)
    module: Mapped[str] = mapped_column(String(128))
    row: Mapped[int] = mapped_column(Integer)
    col: Mapped[int] = mapped_column(Integer)
    # The routed expert the weight belongs to (its tensor is that expert's, or a fused tensor of
    # all experts with the expert as its first index); null in dense layers and shared experts.
    expert: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Double)
    dtype: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Provenance
    citation: Mapped[str | None] = mapped_column(Text)
    # Every source that states this coordinate: [{citation, locator, statement, url}], sorted.
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Other places ([{tensor, index}] in the same revision) that sources give for the same weight.
    disputed_with: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    detector_version: Mapped[str | None] = mapped_column(String(64))
    # Revisions at which a worker verified this published or reported coordinate (its state stays).
    reproduced_in: Mapped[list[str]] = mapped_column(JSONType, default=list)
    retraction_reason: Mapped[str | None] = mapped_column(Text)
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow_seconds)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow_seconds)

    model_revision: Mapped[ModelRevision] = relationship(back_populates="super_weights")


class SuperExpert(Base):
    """A routed expert whose down projection emits a super activation (Su et al., arXiv
    2507.23279): (layer, expert) of one model revision, with its verdict and evidence."""

    __tablename__ = "super_experts"
    __table_args__ = (
        UniqueConstraint("revision_id", "layer", "expert"),
        CheckConstraint(f"state IN {one_of(STATES)}", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(
        ForeignKey("model_revisions.id", ondelete="RESTRICT"), index=True
    )
    layer: Mapped[int] = mapped_column(Integer)
    expert: Mapped[int] = mapped_column(Integer)
    # The experts' module inside the layer, e.g. mlp.experts or block_sparse_moe.experts.
    module: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), index=True)
    # Largest |down-projection output| and how far it stands out; null for claims that give none.
    max_abs_output: Mapped[float | None] = mapped_column(Double)
    spike_ratio: Mapped[float | None] = mapped_column(Double)
    # The output channel (residual dimension) that spikes.
    row: Mapped[int | None] = mapped_column(Integer)
    tokens_routed: Mapped[int | None] = mapped_column(Integer)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Provenance, as for a coordinate.
    citation: Mapped[str | None] = mapped_column(Text)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Other (layer, expert) places ([{layer, expert}]) that sources give for the same expert.
    disputed_with: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    detector_version: Mapped[str | None] = mapped_column(String(64))
    reproduced_in: Mapped[list[str]] = mapped_column(JSONType, default=list)
    retraction_reason: Mapped[str | None] = mapped_column(Text)
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow_seconds)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow_seconds)

    model_revision: Mapped[ModelRevision] = relationship(back_populates="super_experts")


# What the read API serves: any write to these bumps the data version (HTTP caching).
track(ModelRevision, SuperWeight, SuperExpert)


def _stamp_changes(session: Session, version: int) -> None:
    """Mark every revision this flush writes (itself, or a coordinate or super expert of it)
    with the new data version and what the write did: the changes feed's key."""
    changes: dict[int, tuple[ModelRevision, str]] = {}

    def note(rev: ModelRevision | None, kind: str) -> None:
        if rev is None:
            return
        previous = changes.get(id(rev), (rev, "updated"))[1]
        # One kind per revision and flush: added wins, then retracted.
        if previous == "added" or (previous == "retracted" and kind == "updated"):
            kind = previous
        changes[id(rev)] = (rev, kind)

    written = [*session.new, *session.dirty, *session.deleted]
    for obj in written:
        if isinstance(obj, ModelRevision):
            note(obj, "added" if obj in session.new else "updated")
        elif isinstance(obj, (SuperWeight, SuperExpert)):
            rev = obj.model_revision
            if rev is None and obj.revision_id is not None:
                rev = session.get(ModelRevision, obj.revision_id)
            retracted = obj.state == "retracted" and (obj in session.new or _changed(obj, "state"))
            note(rev, "retracted" if retracted else "updated")
    for rev, kind in changes.values():
        if rev in session.new:
            rev.created_version = version
            kind = "added"
        rev.changed_version = version
        rev.last_change = kind


def _changed(obj: Base, attribute: str) -> bool:
    return inspect(obj).attrs[attribute].history.has_changes()


on_bump(_stamp_changes)
