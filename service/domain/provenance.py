"""Provenance: what R7 asks to keep on every gallery record and R8 on every probe.

A probe's provenance arrives in three doors (the API's form fields or JSON, the web form, the
CLI's flags and CSV); each lays the values it was given over the defaults with ``updated``, so
they are read one way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime

from service.errors import InvalidRequest

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})


def truthy(value: object) -> bool:
    """A yes/no value as a person or a form writes it (``"no"`` is false)."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in TRUE_WORDS


def parse_when(value: object, where: str = "captured_at") -> datetime | None:
    """An ISO 8601 date-time (a ``datetime`` is kept; empty is none), or a typed error naming ``where``."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(f"{where} is not an ISO 8601 date-time: {text[:40]!r}") from exc


@dataclass(frozen=True, slots=True)
class ProbeProvenance:
    """What R8 asks to keep on every probe; its fields are the probe image's provenance columns."""

    retailer: str = ""
    store: str = ""
    incident_reference: str = ""
    captured_at: datetime | None = None  # a clip's: when it starts
    supplied_by: str = ""
    witness_statement: bool = False
    camera: str = ""

    def updated(self, values: Mapping[str, object], where: str = "provenance") -> ProbeProvenance:
        """These fields with ``values`` laid over them; an unknown field is refused."""
        unknown = set(values) - set(PROBE_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown provenance fields for {where}: {sorted(unknown)}")
        changes: dict[str, object] = {}
        for name, value in values.items():
            if name == "captured_at":
                changes[name] = parse_when(value, f"captured_at for {where}")
            elif name == "witness_statement":
                changes[name] = truthy(value)
            else:
                changes[name] = str(value)
        return replace(self, **changes)  # type: ignore[arg-type]


PROBE_FIELDS = tuple(f.name for f in fields(ProbeProvenance))


@dataclass(frozen=True, slots=True)
class SubjectProvenance:
    """What R7 asks to keep on every gallery record."""

    source: str = ""
    lawful_basis: str = ""
    conviction_status: str = "unknown"
    under_18: bool = False
