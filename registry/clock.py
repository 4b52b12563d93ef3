"""Time in the registry: everything is stored and shown in UTC."""

from datetime import UTC, datetime
from typing import overload

from registry.errors import InvalidInput


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_seconds() -> datetime:
    """Now in whole seconds: what the JSON index exports, so that what is stored is what an
    export → import → export round trip writes back."""
    return utcnow().replace(microsecond=0)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as timezone-aware UTC (SQLite hands back naive datetimes, which are UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise InvalidInput(f"time without a time zone: {text!r} (add Z for UTC)")
    return as_utc(value).replace(microsecond=0)
