"""Times as linking stores and shows them: aware UTC, ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def now() -> datetime:
    return datetime.now(UTC)


@overload
def aware(when: datetime) -> datetime: ...
@overload
def aware(when: None) -> None: ...
@overload
def aware(when: datetime | None) -> datetime | None: ...
def aware(when: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def iso(when: datetime | None) -> str | None:
    found = aware(when)
    return found.isoformat() if found else None
