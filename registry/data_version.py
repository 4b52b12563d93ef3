"""The registry's data version: a counter that every write to what the read API serves bumps,
in the same transaction, so that a server can tell with one tiny query whether a body it built
earlier is still the answer (registry.caching keeps bodies by this version).

A table takes part with `track(ModelClass)`: any flush that adds, changes or deletes one of its
rows bumps the counter. Writes that bypass the ORM's unit of work (bulk UPDATE statements) must
call `bump(session)` themselves.
"""

from sqlalchemy import BigInteger, Connection, Integer, String, event, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from registry.database import Base

# The one row of the table.
ROW_ID = 1


class DataVersion(Base):
    __tablename__ = "data_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    # Random, set once when the database is made (migration 0010): versions of two databases
    # (or of one made again from scratch) never name the same data in an ETag.
    epoch: Mapped[str] = mapped_column(String(32))


_tracked: set[type] = set()
# Called with (session, new version) by every flush that bumps the version, before its rows are
# written (registry.changes stamps the revisions it writes).
_on_bump: list = []


def track(*classes: type) -> None:
    """Bump the data version whenever a flush writes a row of one of these model classes."""
    _tracked.update(classes)


def on_bump(callback) -> None:
    """Call `callback(session, version)` in every flush that bumps the version."""
    _on_bump.append(callback)


def bump(session: Session) -> int:
    """Add one to the data version; the new version. The row stays locked by this transaction
    until it ends, so versions are handed out in the order their writes commit."""
    return session.execute(
        update(DataVersion)
        .where(DataVersion.id == ROW_ID)
        .values(version=DataVersion.version + 1)
        .returning(DataVersion.version)
        .execution_options(synchronize_session=False)
    ).scalar_one()


def current_version(connection: Connection | Session) -> int:
    return connection.execute(
        select(DataVersion.version).where(DataVersion.id == ROW_ID)
    ).scalar_one()


def current_epoch(connection: Connection | Session) -> str:
    return connection.execute(
        select(DataVersion.epoch).where(DataVersion.id == ROW_ID)
    ).scalar_one()


def _writes_tracked_rows(session: Session) -> bool:
    if any(type(obj) in _tracked for obj in (*session.new, *session.deleted)):
        return True
    return any(
        type(obj) in _tracked and session.is_modified(obj, include_collections=False)
        for obj in session.dirty
    )


@event.listens_for(Session, "before_flush")
def _bump_on_flush(session: Session, _context, _instances) -> None:
    if _tracked and _writes_tracked_rows(session):
        version = bump(session)
        for callback in _on_bump:
            callback(session, version)
