"""Points in time as the service keeps them: aware, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def as_utc(when: datetime) -> datetime: ...
@overload
def as_utc(when: None) -> None: ...
def as_utc(when: datetime | None) -> datetime | None:
    """``when`` in UTC, aware; a naive time is taken to be UTC already (what SQLite hands back).

    A time whose offset takes it past the calendar's ends is a ValueError."""
    if when is None:
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"is out of range: {when.isoformat()}") from exc
