"""`swreg import FILE` at bulk speed, in memory independent of the document's size.

The file is read a model at a time (registry.index.reader) and handled in batches of
BATCH_MODELS: each batch is validated (schema by jsonschema-rs, messages by jsonschema, the
checks a schema cannot make), then written. Revisions the registry does not hold yet (the bulk
case: a new mirror, a first load) are inserted with one multi-row INSERT per table and batch;
those it holds already go through the same upsert as `import_document` (claims merged, counts of
updated and unchanged rows). Everything happens in the caller's one transaction: a problem in
the last model leaves the database as it was.

Memory: one batch of models, plus the keys of the revisions seen so far (a revision may appear
once in a document; ~100 bytes each, never the models themselves).
"""

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import JSON, Table, Text, bindparam, cast, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from registry.clock import utcnow_seconds
from registry.data_version import bump
from registry.errors import InvalidInput
from registry.index import reader, service
from registry.superweights.models import ModelRevision, SuperExpert, SuperWeight, index_key
from registry.superweights.service import revision_kind_of
from workers.sources.pinning import check_model_id

# Models validated and written together: large enough that per-statement costs vanish, small
# enough that a batch of real models (~100 KB each with profiles) stays a few tens of MB.
BATCH_MODELS = 200
META_KEY = "meta"


def cast_table(table: Any) -> Table:
    """A declarative model's `__table__` (typed as a FromClause by SQLAlchemy): its Table."""
    assert isinstance(table, Table)
    return table


def import_file(session: Session, path: Path) -> service.ImportStats:
    """Import the index document in `path` (see the module's docstring)."""
    source = str(path)
    meta = _head(path, source)
    importer = _Importer(session, meta, source)
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


class _Importer:
    def __init__(self, session: Session, meta: dict[str, Any], source: str):
        self.session, self.meta, self.source = session, meta, source
        self.stats = service.ImportStats()
        self.batch: list[dict[str, Any]] = []
        self.first = 0  # the batch's first model's place in the document
        self.seen: set[tuple[str, str]] = set()
        # The data version the multi-row INSERTs are stamped with (they bypass the flush that
        # bumps it): taken at the first of them.
        self.version: int | None = None

    def add(self, model: Any) -> None:
        self.batch.append(model)
        if len(self.batch) >= BATCH_MODELS:
            self._flush_batch()

    def finish(self) -> None:
        self._flush_batch()
        self.session.flush()

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
        known = self._known({(m["model_id"], m["revision"]) for m in models})
        for model in models:
            if (model["model_id"], model["revision"]) in known:
                service.import_model(self.session, model, self.stats)
        self.session.flush()
        self.session.expunge_all()  # written: nothing of this batch is kept
        self._insert([m for m in models if (m["model_id"], m["revision"]) not in known])

    def _rows(self, table: Table, rows: list[dict[str, Any]], ids: bool = False) -> list[int]:
        """Insert `rows` into `table`; with `ids`, their new ids in the rows' order."""
        rows = _encoded(rows, table)
        if self.session.get_bind().dialect.name == "postgresql":
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
        postgres = self.session.get_bind().dialect.name == "postgresql"
        return insert(table).values(
            {
                name: cast(bindparam(name, type_=Text), JSONB)
                if postgres
                else bindparam(name, type_=Text)
                for name in _json_columns(table)
            }
        )

    def _known(self, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        key = tuple_(ModelRevision.model_id, ModelRevision.revision)
        return {
            (model_id, revision)
            for model_id, revision in self.session.execute(
                select(ModelRevision.model_id, ModelRevision.revision).where(key.in_(keys))
            )
        }

    def _insert(self, models: list[dict[str, Any]]) -> None:
        if not models:
            return
        now = utcnow_seconds()
        if self.version is None:
            self.version = bump(self.session)
        changes = {
            "created_version": self.version,
            "changed_version": self.version,
            "last_change": "added",
        }
        ids = self._rows(
            cast_table(ModelRevision.__table__),
            [{**_revision_row(model, now), **changes} for model in models],
            ids=True,
        )
        coordinates, experts = [], []
        for revision_id, model in zip(ids, models, strict=True):
            for coord in model["super_weights"]:
                coordinates.append(_coordinate_row(revision_id, coord, now))
            for found in model.get("super_experts", []):
                experts.append(_super_expert_row(revision_id, found, now))
        tables = (
            (cast_table(SuperWeight.__table__), coordinates),
            (cast_table(SuperExpert.__table__), experts),
        )
        for table, rows in tables:
            if rows:
                self._rows(table, rows)
        self.stats.revisions += len(models)
        self.stats.coordinates["created"] += len(coordinates)
        self.stats.super_experts["created"] += len(experts)


def _json_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, JSON | JSONB) or _is_json(c.type)]


def _is_json(column_type) -> bool:
    # JSONType is JSON with a PostgreSQL variant: its base type is JSON.
    return isinstance(getattr(column_type, "impl", column_type), JSON)


def _encoded(rows: list[dict[str, Any]], table: Table) -> list[dict[str, Any]]:
    names = _json_columns(table)
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
