"""The JSON index written as a stream: the same bytes as `service.dumps(export_document(...))`,
in memory bounded by one batch of model revisions whatever the registry's size.

The document's text is its fixed head (`meta`), then each model revision's canonical text
(`json.dumps` with the document's options) indented to its depth inside `models`, then the tail.
Revisions are read in `(model_id, revision)` order by key (binary collation on every backend,
as Python sorts strings), `BATCH_REVISIONS` at a time, and let go before the next batch.

A reader that needs the bytes to match a data version (the HTTP ETag) runs the stream inside one
snapshot: `Snapshot` opens a repeatable-read transaction (PostgreSQL) or a deferred read
transaction (SQLite, WAL mode), in which the version, `generated_at` and every batch are read.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.orm import Session

from registry import __version__
from registry.data_version import current_epoch, current_version
from registry.superweights import service as sw_service
from registry.superweights.documents import format_time, revision_document
from registry.superweights.models import ModelRevision

# Revisions held at once: each is a few KB to ~150 KB of text with its profile, so a batch stays
# within a few MB while the per-query overhead is paid once per 100 revisions.
BATCH_REVISIONS = 100
# Depth of a model inside the document: "models" (2 spaces) then the list's items (2 more).
MODEL_INDENT = " " * 4
# What every index text is written with (service.dumps uses the same).
JSON_OPTIONS: dict[str, Any] = {
    "indent": 2,
    "sort_keys": True,
    "ensure_ascii": False,
    "allow_nan": False,
}


def meta_document(generated_at: datetime) -> dict[str, Any]:
    """The index's `meta`: its schema version, time, generator, licence and how to cite it (the
    one definition, for the whole document and the stream alike)."""
    from registry.citation import LICENSE, index_citation
    from registry.index.document import GENERATOR_NAME, SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": format_time(generated_at),
        "generator": {"name": GENERATOR_NAME, "version": __version__},
        "license": LICENSE,
        "citation": index_citation(__version__),
    }


def iter_text(meta: dict[str, Any], models: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The canonical text of `{"meta": meta, "models": [*models]}` in pieces, one per model."""
    head = json.dumps(meta, **JSON_OPTIONS).replace("\n", "\n  ")
    first = True
    for model in models:
        text = MODEL_INDENT + json.dumps(model, **JSON_OPTIONS).replace("\n", "\n" + MODEL_INDENT)
        if first:
            yield '{\n  "meta": ' + head + ',\n  "models": [\n' + text
            first = False
        else:
            yield ",\n" + text
    if first:
        yield '{\n  "meta": ' + head + ',\n  "models": []\n}\n'
    else:
        yield "\n  ]\n}\n"


def iter_revisions(
    session: Session, batch: int = BATCH_REVISIONS, where=None
) -> Iterator[ModelRevision]:
    """Every model revision (meeting `where`, when given) in `(model_id, revision)` order, read
    by key one batch at a time; each batch is dropped from the session before the next is read."""
    model_id = sw_service.binary_order(session, ModelRevision.model_id)
    revision = sw_service.binary_order(session, ModelRevision.revision)
    after: tuple[str, str] | None = None
    while True:
        query = select(ModelRevision).order_by(model_id, revision).limit(batch)
        if where is not None:
            query = query.where(where)
        if after is not None:
            query = query.where(
                or_(model_id > after[0], and_(model_id == after[0], revision > after[1]))
            )
        rows = list(session.scalars(query))
        yield from rows
        if len(rows) < batch:
            return
        after = (rows[-1].model_id, rows[-1].revision)
        session.expunge_all()


def iter_index(
    session: Session,
    *,
    generated_at: datetime | None = None,
    batch: int = BATCH_REVISIONS,
    where=None,
) -> Iterator[str]:
    """The index text of everything `session` sees (see the module's docstring), or of the
    revisions meeting `where`."""
    from registry.index.document import EMPTY_REGISTRY_TIME

    if generated_at is None:
        generated_at = sw_service.last_change(session) or EMPTY_REGISTRY_TIME
    models = (revision_document(rev) for rev in iter_revisions(session, batch, where))
    return iter_text(meta_document(generated_at), models)


@dataclass
class Snapshot:
    """One read transaction: the data version it sees, that version's time of last change, and
    the index text of exactly that data. Close it (or read `chunks` to the end) to end the
    transaction and give its connection back."""

    connection: Connection
    session: Session
    epoch: str
    version: int

    @cached_property
    def generated_at(self) -> datetime:
        from registry.index.document import EMPTY_REGISTRY_TIME

        return sw_service.last_change(self.session) or EMPTY_REGISTRY_TIME

    @classmethod
    def open(cls, engine: Engine) -> "Snapshot":
        if engine.dialect.name == "postgresql":
            connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
            connection.begin()
        else:
            connection = engine.connect()
            # pysqlite starts no transaction for reads: BEGIN pins the snapshot (WAL mode) at
            # the first read below, so every later batch sees the same data.
            connection.exec_driver_sql("BEGIN")
        try:
            session = Session(bind=connection)
            epoch, version = current_epoch(connection), current_version(connection)
        except BaseException:
            connection.close()
            raise
        return cls(connection, session, epoch, version)

    def chunks(self, generated_at: datetime | None = None, where=None) -> Iterator[str]:
        """The index text (of the revisions meeting `where`, when given); `generated_at` pins
        meta.generated_at (reproducible bytes)."""
        try:
            yield from iter_index(
                self.session, generated_at=generated_at or self.generated_at, where=where
            )
        finally:
            self.close()

    def close(self) -> None:
        self.session.close()
        self.connection.close()  # rolls the read transaction back
