"""Times as linking stores and shows them: aware UTC, ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime

from service.domain.times import as_utc


def now() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime | None) -> str | None:
    found = as_utc(when)
    return found.isoformat() if found else None
