"""`swreg import FILE` at bulk speed, in memory independent of the document's size.

The file is read a model at a time (registry.index.reader) and handled in batches of
BATCH_MODELS: each batch is validated (schema by jsonschema-rs, messages by jsonschema, the
checks a schema cannot make), then written, while the next batch is read and validated (one
writing thread: the database's own work, PostgreSQL's JSONB parsing above all, overlaps the
reading). Revisions the registry does not hold yet (a new mirror, a first load) are inserted
with one multi-row INSERT (SQLite) or one COPY (PostgreSQL) per table and batch. Those it holds
already are read with their coordinates and super experts in three queries per batch, brought up
to date by the same rules as `import_document`'s row-by-row upsert (`service.coordinate_update`,
`service.super_expert_update`, `apply_fields`: claims merged, times stamped, the changes feed's
kinds), and only the rows that change are written, with one executemany per table and set of
changed columns. Everything happens in the caller's one transaction, at one data version: a
problem in the last model leaves the database as it was.

Memory: one batch of models being read and one being written, plus the keys of the revisions
seen so far (a revision may appear once in a document; ~100 bytes each, never the models).
"""

import gc
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
from sqlalchemy import (
    JSON,
    Table,
    Text,
    bindparam,
    cast,
    insert,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from registry.clock import utcnow_seconds
from registry.data_version import bump
from registry.errors import InvalidInput
from registry.index import reader, service
from registry.superweights.models import ModelRevision, SuperExpert, SuperWeight, index_key
from registry.superweights.service import apply_fields, revision_kind_of
from workers.sources.pinning import check_model_id

# Models validated and written together: large enough that per-statement costs vanish, small
# enough that a batch of real models (~100 KB each with profiles) stays a few tens of MB.
BATCH_MODELS = 200
# While the import runs the garbage collector is paused (see _collections_of_new_objects_only):
# the cycles SQLAlchemy's statements leave (a few KB a batch) are collected this often.
COLLECT_EVERY_BATCHES = 10
META_KEY = "meta"


def cast_table(table: Any) -> Table:
    """A declarative model's `__table__` (typed as a FromClause by SQLAlchemy): its Table."""
    assert isinstance(table, Table)
    return table


REVISIONS = cast_table(ModelRevision.__table__)
COORDINATES = cast_table(SuperWeight.__table__)
EXPERTS = cast_table(SuperExpert.__table__)


def import_file(session: Session, path: Path) -> service.ImportStats:
    """Import the index document in `path` (see the module's docstring)."""
    with _collections_of_new_objects_only(), _Writer() as writer:
        return _import_file(session, path, writer)


@contextmanager
def _collections_of_new_objects_only() -> Iterator[None]:
    """The cyclic garbage collector, while a batch of parsed models (~10^5 objects each, none
    in a cycle) is alive, runs full collections that scan every object of the process again
    and again: a quarter to half of the import's time. It is paused meanwhile (what the import
    makes is freed by reference counting; `_Importer` collects the few cycles every
    COLLECT_EVERY_BATCHES), and what was made before the import is left out of those
    collections (frozen)."""
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


class _Writer:
    """One thread that writes a batch while the caller reads the next. At most one batch is in
    flight: `submit` waits for the previous one first, and re-raises its error. The session is
    only ever used by one thread at a time (the reading thread touches no database)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swreg-import")
        self._pending: Future | None = None

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self.wait()
        self._pending = self._executor.submit(write, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, kind, error, _traceback) -> None:
        try:
            # On an error in the reading thread, the batch being written is earlier in the file:
            # its own error (if any) is the one to report. Either way the caller's transaction
            # is rolled back only once this thread is done with the session.
            self.wait()
        finally:
            self._executor.shutdown(wait=True)


def _import_file(session: Session, path: Path, writer: _Writer) -> service.ImportStats:
    source = str(path)
    meta = _head(path, source)
    importer = _Importer(session, meta, source, writer)
    has_models = in_list = False
    with reader.open_text(path) as handle:
        for key, value in _members(handle, path):
            if key == reader.MODELS_KEY and value is reader.ARRAY:
                has_models = in_list = True
            elif key == reader.MODELS_KEY and in_list:
                importer.add(value)
            else:
                in_list = False
                if key != META_KEY:  # anything else is wrong: the schema says what
                    _check_shape({META_KEY: meta, reader.MODELS_KEY: [], key: value}, source)
    if not has_models:
        _check_shape({META_KEY: meta}, source)
    importer.finish()
    return importer.stats


def _members(handle, path: Path):
    try:
        yield from reader.members(handle)
    except reader.NotJson as exc:
        raise InvalidInput(f"invalid {path}: not JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"cannot read {path}: {' '.join(str(exc).split())}") from None


def _head(path: Path, source: str) -> Any:
    """The document's meta (read first: the models' schema version depends on it) and its
    top-level shape with `models` empty, checked by the schema; a first pass that stops at
    the meta (the first member of a canonical document)."""
    shape: dict[str, Any] = {}
    with reader.open_text(path) as handle:
        for key, value in _members(handle, path):
            if key == "":
                _check_shape(value, source)
            elif key == reader.MODELS_KEY:
                if value is reader.ARRAY:
                    shape[key] = []
                elif key not in shape:  # not a list: the schema says what is wrong
                    shape[key] = value
            else:
                shape[key] = value
                if key == META_KEY:
                    break
    _check_shape({**shape, "models": shape.get("models", [])}, source)
    return shape[META_KEY]


def _check_shape(document: Any, source: str) -> None:
    """The schema on a document without its models (cheap): missing or unknown members, a
    meta that is wrong, a `models` that is not a list."""
    service.validate_part_shape(document, source)


Key = tuple[str, str]


class _Importer:
    def __init__(self, session: Session, meta: dict[str, Any], source: str, writer: _Writer):
        self.session, self.meta, self.source, self.writer = session, meta, source, writer
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.stats = service.ImportStats()
        self.batch: list[dict[str, Any]] = []
        self.first = 0  # the batch's first model's place in the document
        self.batches = 0
        self.seen: set[Key] = set()
        # The one data version everything this import writes is stamped with (its statements
        # bypass the ORM's flush, which would bump it): taken at the first write.
        self.version: int | None = None

    def add(self, model: Any) -> None:
        self.batch.append(model)
        if len(self.batch) >= BATCH_MODELS:
            self._flush_batch()

    def finish(self) -> None:
        self._flush_batch()
        self.writer.wait()
        if self.postgres and self.version is not None:
            self._analyze()

    def _analyze(self) -> None:
        """PostgreSQL's planner statistics of the tables written, brought up to date in the
        import's transaction. After a bulk load they still describe the tables before it until
        autovacuum gets round to them (minutes to hours on a large table): meanwhile the planner
        guesses thousands of revisions per model id and joins every page of the model list to
        a sequential scan of all coordinates (125-145 ms a page at 100,000 models, against 4-5
        ms once analysed; ANALYZE of the three tables took 0.65 s there)."""
        tables = ", ".join(f'"{t.name}"' for t in (REVISIONS, COORDINATES, EXPERTS))
        self.session.execute(text(f"ANALYZE {tables}"))

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        models, first = self.batch, self.first
        self.batch, self.first = [], first + len(models)
        service.validate_part(self.meta, models, first, self.source)
        for k, model in enumerate(models):
            service.check_new_revision(model, first + k, self.seen, self.source)
            check_model_id(model["model_id"])
            revision_kind_of(model["revision"])
        self.writer.submit(self._write, models)
        self.batches += 1
        if self.batches % COLLECT_EVERY_BATCHES == 0:
            gc.collect()

    # --- in the writing thread ----------------------------------------------------------

    def _write(self, models: list[dict[str, Any]]) -> None:
        keys = {(m["model_id"], m["revision"]) for m in models}
        held = {
            (row["model_id"], row["revision"]): row
            for row in self._read(
                REVISIONS,
                tuple_(REVISIONS.c.model_id, REVISIONS.c.revision).in_(keys),
            )
        }
        if held:
            self._update([m for m in models if (m["model_id"], m["revision"]) in held], held)
        self._insert([m for m in models if (m["model_id"], m["revision"]) not in held])

    def _stamp(self) -> int:
        if self.version is None:
            self.version = bump(self.session)
        return self.version

    def _read(self, table: Table, where) -> list[dict[str, Any]]:
        """The rows of `table` meeting `where`, as the ORM would load them; JSON columns are
        read as text and decoded here (several times faster than the column type's loader)."""
        names = set(_json_columns(table))
        as_text = (lambda c: cast(c, Text)) if self.postgres else (lambda c: type_coerce(c, Text))
        columns = [as_text(c).label(c.name) if c.name in names else c for c in table.columns]
        return [
            {k: _decode(v) if k in names else v for k, v in row.items()}
            for row in self.session.execute(select(*columns).where(where)).mappings()
        ]

    def _update(self, models: list[dict[str, Any]], held: dict[Key, dict[str, Any]]) -> None:
        """Bring revisions the registry holds up to date, as `service.import_model` would."""
        ids = [row["id"] for row in held.values()]
        coordinates: dict[int, dict[tuple[str, str], dict[str, Any]]] = {i: {} for i in ids}
        for row in self._read(COORDINATES, COORDINATES.c.revision_id.in_(ids)):
            coordinates[row["revision_id"]][(row["tensor"], row["index_key"])] = row
        experts: dict[int, dict[tuple[int, int], dict[str, Any]]] = {i: {} for i in ids}
        for row in self._read(EXPERTS, EXPERTS.c.revision_id.in_(ids)):
            experts[row["revision_id"]][(row["layer"], row["expert"])] = row
        now = utcnow_seconds()
        changed: dict[Table, list[dict[str, Any]]] = {REVISIONS: [], COORDINATES: [], EXPERTS: []}
        created: dict[Table, list[dict[str, Any]]] = {COORDINATES: [], EXPERTS: []}
        for model in models:
            rev = held[(model["model_id"], model["revision"])]
            # What the write does to the revision (the changes feed's kind): nothing yet.
            kinds: set[str] = set()
            revision_changes = _changes(
                rev,
                service.revision_fields(model),
                service.parse_optional_time(model.get("created_at")),
                service.parse_optional_time(model.get("updated_at")),
            )
            if revision_changes:
                kinds.add("updated")
            for coord in model["super_weights"]:
                existing = coordinates[rev["id"]].get((coord["tensor"], index_key(coord["index"])))
                fields, created_at, updated_at = service.coordinate_update(
                    None if existing is None else SimpleNamespace(**existing), coord
                )
                fields = {**fields, "index": [int(i) for i in fields["index"]]}
                fields["index_key"] = index_key(fields["index"])
                outcome = self._upsert(
                    COORDINATES, rev["id"], existing, fields, created_at, updated_at, now,
                    changed, created, kinds,
                )  # fmt: skip
                self.stats.coordinates[outcome] += 1
            for found in model.get("super_experts", []):
                existing = experts[rev["id"]].get((found["layer"], found["expert"]))
                fields, created_at, updated_at = service.super_expert_update(
                    None if existing is None else SimpleNamespace(**existing), found
                )
                outcome = self._upsert(
                    EXPERTS, rev["id"], existing, fields, created_at, updated_at, now,
                    changed, created, kinds,
                )  # fmt: skip
                self.stats.super_experts[outcome] += 1
            if kinds:
                # As registry.changes stamps a flush: a retraction outranks an update.
                kind = "retracted" if "retracted" in kinds else "updated"
                revision_changes.update(changed_version=self._stamp(), last_change=kind)
            if revision_changes:
                changed[REVISIONS].append({"id": rev["id"], **revision_changes})
            self.stats.revisions += 1
        for table, rows in changed.items():
            self._update_rows(table, rows)
        for table, rows in created.items():
            if rows:
                self._rows(table, rows)

    def _upsert(
        self,
        table: Table,
        revision_id: int,
        existing: dict[str, Any] | None,
        fields: dict[str, Any],
        created_at: datetime | None,
        updated_at: datetime | None,
        now: datetime,
        changed: dict[Table, list[dict[str, Any]]],
        created: dict[Table, list[dict[str, Any]]],
        kinds: set[str],
    ) -> str:
        """One coordinate or super expert of a held revision: its row to insert or the columns
        to update, noted in `created` or `changed`; "created", "updated" or "unchanged"."""
        if existing is None:
            row = {
                "revision_id": revision_id,
                **({"expert": None} if table is COORDINATES else {}),
                **fields,
                **_stamps(now, created_at, updated_at),
            }
            created[table].append(row)
            kinds.add("retracted" if row["state"] == "retracted" else "updated")
            return "created"
        columns = _changes(existing, fields, created_at, updated_at)
        if not columns:
            return "unchanged"
        changed[table].append({"id": existing["id"], **columns})
        retracted = "state" in columns and columns["state"] == "retracted"
        kinds.add("retracted" if retracted else "updated")
        return "updated"

    def _update_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """UPDATE each row's changed columns by id: one executemany per set of columns."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for names, group in groups.items():
            group = _encoded(group, table, [n for n in names if n in _json_columns(table)])
            values = {n: self._parameter(table, n) for n in names if n != "id"}
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values(values)
                .execution_options(synchronize_session=False)
            )
            parameters = [{**row, "row_id": row["id"]} for row in group]
            for parameter in parameters:
                del parameter["id"]
            self.session.connection().execute(statement, parameters)

    def _parameter(self, table: Table, name: str):
        """The bound value of a column; JSON columns take JSON text (`_encoded`)."""
        if name not in _json_columns(table):
            return bindparam(name, type_=table.c[name].type)
        if self.postgres:
            return cast(bindparam(name, type_=Text), JSONB)
        return bindparam(name, type_=Text)

    def _rows(self, table: Table, rows: list[dict[str, Any]], ids: bool = False) -> list[int]:
        """Insert `rows` into `table`; with `ids`, their new ids in the rows' order."""
        rows = _encoded(rows, table)
        if self.postgres:
            return self._copy(table, rows, ids)
        statement = self._statement(table)
        if not ids:
            self.session.execute(statement, rows)
            return []
        returning = statement.returning(table.c.id, sort_by_parameter_order=True)
        return list(self.session.scalars(returning, rows))

    def _copy(self, table: Table, rows: list[dict[str, Any]], ids: bool) -> list[int]:
        # PostgreSQL: COPY, several times faster than multi-row INSERTs; ids taken from the
        # table's own sequence first, so that they are known in order.
        new_ids: list[int] = []
        if ids:
            new_ids = list(
                self.session.scalars(
                    text(
                        "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"table": table.name, "n": len(rows)},
                )
            )
            for row, new_id in zip(rows, new_ids, strict=True):
                row["id"] = new_id
        columns = list(rows[0])
        driver = self.session.connection().connection.driver_connection
        assert driver is not None  # a live psycopg connection
        cursor = driver.cursor()
        names = ", ".join(f'"{name}"' for name in columns)
        with cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[name] for name in columns])
        return new_ids

    def _statement(self, table: Table):
        """INSERT into `table` whose JSON columns take JSON text (encoded by `_encoded`, at
        several times the speed of the column type's own json.dumps)."""
        return insert(table).values(
            {name: self._parameter(table, name) for name in _json_columns(table)}
        )

    def _insert(self, models: list[dict[str, Any]]) -> None:
        if not models:
            return
        now = utcnow_seconds()
        version = self._stamp()
        changes = {"created_version": version, "changed_version": version, "last_change": "added"}
        ids = self._rows(
            REVISIONS, [{**_revision_row(model, now), **changes} for model in models], ids=True
        )
        coordinates, experts = [], []
        for revision_id, model in zip(ids, models, strict=True):
            for coord in model["super_weights"]:
                coordinates.append(_coordinate_row(revision_id, coord, now))
            for found in model.get("super_experts", []):
                experts.append(_super_expert_row(revision_id, found, now))
        for table, rows in ((COORDINATES, coordinates), (EXPERTS, experts)):
            if rows:
                self._rows(table, rows)
        self.stats.revisions += len(models)
        self.stats.coordinates["created"] += len(coordinates)
        self.stats.super_experts["created"] += len(experts)


def _changes(
    row: dict[str, Any],
    values: dict[str, Any],
    created_at: datetime | None,
    updated_at: datetime | None,
) -> dict[str, Any]:
    """The columns of `row` that the ORM's upsert (`apply_fields`) would set, with their new
    values; empty when nothing changes."""
    current = SimpleNamespace(**row)
    if not apply_fields(current, values, created_at=created_at, updated_at=updated_at):
        return {}
    # apply_fields assigns only the values that differ: those are new objects.
    return {name: value for name, value in vars(current).items() if value is not row[name]}


def _decode(value: str | None) -> Any:
    """A JSON column's stored text as the column's loader reads it (json.loads)."""
    if value is None:
        return None
    try:
        return _DECODE(value)
    except msgspec.DecodeError:  # what msgspec refuses and json reads (a lone surrogate...)
        return json.loads(value)


_DECODE = msgspec.json.Decoder().decode


@lru_cache
def _json_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, JSON | JSONB) or _is_json(c.type)]


def _is_json(column_type) -> bool:
    # JSONType is JSON with a PostgreSQL variant: its base type is JSON.
    return isinstance(getattr(column_type, "impl", column_type), JSON)


def _encoded(
    rows: list[dict[str, Any]], table: Table, names: list[str] | None = None
) -> list[dict[str, Any]]:
    names = _json_columns(table) if names is None else names
    for row in rows:
        for name in names:
            # Every row names every JSON column: a missing one would take the column default.
            value = row.get(name)
            row[name] = None if value is None else _ENCODE(value).decode()
    return rows


# NaN and Infinity never get here: the reader refuses them (they are not JSON).
_ENCODE = msgspec.json.Encoder().encode


def _stamps(now: datetime, created: datetime | None, updated: datetime | None) -> dict:
    # As the upserts stamp a new row: the given times, else the creation time, else now.
    return {"created_at": created or now, "updated_at": updated or created or now}


def _revision_row(model: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "model_id": model["model_id"],
        "revision": model["revision"],
        "revision_kind": revision_kind_of(model["revision"]),
        # Every row names every column (one multi-row INSERT, one COPY): those a document
        # may leave out first.
        "quantization_check": None,
        "base_model": None,
        "lineage_check": None,
        **service.revision_fields(model),
        **_stamps(
            now,
            service.parse_optional_time(model.get("created_at")),
            service.parse_optional_time(model.get("updated_at")),
        ),
    }


def _coordinate_row(revision_id: int, coord: dict[str, Any], now: datetime) -> dict[str, Any]:
    fields = service.coordinate_fields(coord)
    fields["index"] = [int(i) for i in fields["index"]]
    return {
        "revision_id": revision_id,
        "expert": None,
        **fields,
        "index_key": index_key(fields["index"]),
        **_stamps(now, *service.provenance_times(coord)),
    }


def _super_expert_row(revision_id: int, found: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "revision_id": revision_id,
        **service.super_expert_fields(found),
        **_stamps(now, *service.provenance_times(found)),
    }
