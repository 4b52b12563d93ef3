"""Reading the changes feed.

Every write stamps the revisions it touches with the new data version (`changed_version`, in
its own transaction; registry.superweights.models). Versions are handed out in commit order
(the data-version row stays locked until the writer commits), so a reader that saw the registry
at version V has seen every change stamped V or lower, and a revision changed again later moves
to a later place in the feed: reading by the key (changed_version, id) after the last key read
misses nothing and never goes back.

A cursor is "V" (every change after data version V; "0" is the whole registry) or "V.ID" (after
revision ID of version V: the next page). A page's `next` is the cursor to read on with; on the
last page it is the data version the page was read at, so that a mirror polls with it.
"""

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from registry.errors import InvalidInput
from registry.superweights.documents import revision_document
from registry.superweights.models import ModelRevision

DEFAULT_LIMIT = 100
# A page of revisions with their profiles is ~40-150 KB a revision.
MAX_LIMIT = 1000
# At most 18 digits each: below 2**63, what a BIGINT holds.
CURSOR_PATTERN = r"^(0|[1-9][0-9]{0,17})(?:\.([1-9][0-9]{0,17}))?$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class Cursor:
    """Where a reader is: every change up to `version` seen, or, with `after_id`, those of
    `version` up to that revision row only."""

    version: int
    after_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        match = _CURSOR.fullmatch(text or "")
        if match is None:
            shown = (text or "")[:40]
            raise InvalidInput(
                f"invalid cursor {shown!r}: expected a data version (e.g. 0 or 1234) or the "
                "`next` of a page (e.g. 1234.56)"
            )
        after_id = match.group(2)
        return cls(int(match.group(1)), None if after_id is None else int(after_id))

    def __str__(self) -> str:
        return str(self.version) if self.after_id is None else f"{self.version}.{self.after_id}"

    def key(self) -> tuple[int, float]:
        """The position in the feed's order (version, revision row) after which it reads."""
        return (self.version, math.inf if self.after_id is None else self.after_id)


def _after(cursor: Cursor):
    if cursor.after_id is None:
        return ModelRevision.changed_version > cursor.version
    return or_(
        ModelRevision.changed_version > cursor.version,
        and_(
            ModelRevision.changed_version == cursor.version,
            ModelRevision.id > cursor.after_id,
        ),
    )


def change_kind(rev: ModelRevision, since: Cursor) -> str:
    """`added` for a revision the reader has not seen (its creation comes after the cursor in
    the feed's order), else what the last write did (`updated` or `retracted`)."""
    if (rev.created_version, rev.id) > since.key():
        return "added"
    return "updated" if rev.last_change == "added" else rev.last_change


def changes_page(
    session: Session, since: Cursor, data_version: int, limit: int = DEFAULT_LIMIT
) -> dict[str, Any]:
    """One page of the feed after `since`, read in the session's snapshot at `data_version`."""
    revisions = list(
        session.scalars(
            select(ModelRevision)
            .where(_after(since))
            .order_by(ModelRevision.changed_version, ModelRevision.id)
            .limit(limit + 1)
        )
    )
    has_more = len(revisions) > limit
    revisions = revisions[:limit]
    if has_more:
        last = revisions[-1]
        following = Cursor(last.changed_version, last.id)
    else:
        following = Cursor(max(data_version, since.version))
    return {
        "since": str(since),
        "data_version": data_version,
        "changes": [
            {
                "change": change_kind(rev, since),
                "version": rev.changed_version,
                "model_id": rev.model_id,
                "revision": rev.revision,
                "model": revision_document(rev),
            }
            for rev in revisions
        ],
        "has_more": has_more,
        "next": str(following),
    }


def changed_since(since: Cursor):
    """The condition on ModelRevision of `swreg export --since`."""
    return _after(since)
