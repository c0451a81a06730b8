"""Probe provenance is read one way from every door (API JSON, web form, CLI CSV)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.domain.provenance import PROBE_FIELDS, ProbeProvenance, parse_when, truthy
from service.errors import InvalidRequest


def test_values_are_laid_over_the_defaults_field_by_field() -> None:
    defaults = ProbeProvenance(retailer="Acme", store="High St", supplied_by="ana")
    updated = defaults.updated({"store": "Market Sq", "captured_at": "2026-06-01T10:00:00+01:00"}, "a.jpg")
    assert updated.retailer == "Acme" and updated.supplied_by == "ana"
    assert updated.store == "Market Sq"
    assert updated.captured_at == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert updated.captured_at.utcoffset() == timedelta(hours=1)
    assert defaults.store == "High St", "the defaults are never changed"


def test_unknown_fields_and_bad_times_are_typed_errors_naming_the_file() -> None:
    with pytest.raises(InvalidRequest, match=r"unknown provenance fields for b\.jpg: \['colour'\]"):
        ProbeProvenance().updated({"colour": "red"}, "b.jpg")
    with pytest.raises(InvalidRequest, match=r"captured_at for b\.jpg is not an ISO 8601 date-time"):
        ProbeProvenance().updated({"captured_at": "yesterday"}, "b.jpg")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("no", False),
        ("", False),
        (None, False),
    ],
)
def test_yes_no_words(value: object, expected: bool) -> None:
    assert truthy(value) is expected
    assert ProbeProvenance().updated({"witness_statement": value}).witness_statement is expected


def test_empty_time_is_none_and_a_datetime_is_kept() -> None:
    when = datetime(2026, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_when("") is None and parse_when(None) is None
    assert parse_when(when) is when
    assert PROBE_FIELDS == (
        "retailer",
        "store",
        "incident_reference",
        "captured_at",
        "supplied_by",
        "witness_statement",
        "camera",
    )
