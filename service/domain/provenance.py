"""Provenance: what R7 asks to keep on every gallery record and R8 on every probe.

A probe's provenance arrives in three doors (the API's form fields or JSON, the web form, the
CLI's flags and CSV); each hands the values it was given to one model, :class:`ProbeProvenance`,
so they are checked and read one way everywhere:

- text is text: stripped, at most :data:`TEXT_MAX` characters (the columns' size), and never a
  JSON object, list or number stored as its Python spelling;
- a yes/no is ``yes``/``no``, ``true``/``false``, ``1``/``0``, ``on``/``off`` (or a JSON boolean);
  anything else is refused, so ``"no"`` is never read as true;
- a time is an ISO 8601 date or date-time string (or a ``datetime``), kept in UTC with its offset
  applied; one without an offset is read as UTC. A number is refused.

A value that breaks a rule is an :class:`~service.errors.InvalidRequest` naming the field and the
file, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from service.domain.times import as_utc
from service.errors import InvalidRequest

TEXT_MAX = 200  # the provenance columns' size
YES = frozenset({"1", "true", "t", "yes", "y", "on"})
NO = frozenset({"", "0", "false", "f", "no", "n", "off"})


def _text(value: object, longest: int = TEXT_MAX) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"must be text, not {_kind(value)}")
    text = value.strip()
    if len(text) > longest:
        raise ValueError(f"is {len(text)} characters long; at most {longest}")
    return text


def yes_no(value: object) -> bool:
    """A yes/no as a person, a form or JSON writes it (``"no"`` is false; empty is no); else ValueError."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in YES:
        return True
    if word in NO:
        return False
    raise ValueError(f"must be yes or no, not {_shown(value)}")


def _when(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 date-time string, not {_kind(value)}")
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"is not an ISO 8601 date or date-time: {_shown(text)}") from exc
    return as_utc(parsed)


def parse_when(value: object, where: str = "captured_at") -> datetime | None:
    """An ISO 8601 date or date-time (empty is none) in UTC, or an InvalidRequest naming ``where``."""
    try:
        return _when(value)
    except ValueError as exc:
        raise InvalidRequest(f"{where} {exc}") from exc


def _kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), f"a {type(value).__name__} value")


def _shown(value: object) -> str:
    return repr(value)[:40]


Text = Annotated[str, BeforeValidator(_text)]
YesNo = Annotated[bool, BeforeValidator(yes_no)]
When = Annotated[datetime | None, BeforeValidator(_when)]


class _Provenance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, values: Mapping[str, object], where: str = "provenance") -> Self:
        """The model of ``values``, or an InvalidRequest naming each field that breaks a rule."""
        return cls().updated(values, where)

    def updated(self, values: Mapping[str, object], where: str = "provenance") -> Self:
        """These fields with ``values`` laid over them (checked as above); an unknown field is refused."""
        if not isinstance(values, Mapping):
            raise InvalidRequest(f"provenance for {where} must be an object")
        unknown = sorted(str(k) for k in values if k not in type(self).model_fields)
        if unknown:
            raise InvalidRequest(f"unknown provenance fields for {where}: {unknown}")
        try:
            return type(self).model_validate({**dict(self), **values})
        except ValidationError as exc:
            raise InvalidRequest(f"provenance for {where}: {_reasons(exc)}") from None


def _reasons(exc: ValidationError) -> str:
    """One line: each failing field and why (the validators' own words, without pydantic's prefix)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{field} {message}")
    return "; ".join(parts)


class ProbeProvenance(_Provenance):
    """What R8 asks to keep on every probe; its fields are the probe image's provenance columns."""

    retailer: Text = ""
    store: Text = ""
    incident_reference: Text = ""
    captured_at: When = None  # a clip's: when it starts; UTC
    supplied_by: Text = ""
    witness_statement: YesNo = False
    camera: Text = ""


PROBE_FIELDS = tuple(ProbeProvenance.model_fields)


class SubjectProvenance(_Provenance):
    """What R7 asks to keep on every gallery record."""

    source: Text = ""
    lawful_basis: Text = ""
    conviction_status: Annotated[str, BeforeValidator(lambda v: _text(v, 64) or "unknown")] = "unknown"
    under_18: YesNo = False
