"""Provenance is checked by one model from every door (API fields and JSON, web form, CLI flags and CSV)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.domain.provenance import PROBE_FIELDS, TEXT_MAX, ProbeProvenance, SubjectProvenance, parse_when, yes_no
from service.domain.times import as_utc
from service.errors import InvalidRequest


def test_values_are_laid_over_the_defaults_field_by_field_and_times_kept_in_utc() -> None:
    defaults = ProbeProvenance.parse({"retailer": " Acme ", "store": "High St", "supplied_by": "ana"})
    updated = defaults.updated({"store": "Market Sq", "captured_at": "2026-06-01T10:00:00+01:00"}, "a.jpg")
    assert updated.retailer == "Acme" and updated.supplied_by == "ana", "text is stripped"
    assert updated.store == "Market Sq"
    assert updated.captured_at == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert updated.captured_at is not None and updated.captured_at.utcoffset() == timedelta(0), "kept in UTC"
    assert defaults.store == "High St", "the defaults are never changed"
    with pytest.raises(ValueError, match="frozen"):
        defaults.store = "elsewhere"  # type: ignore[misc]


def test_a_time_without_offset_is_utc_and_a_date_is_its_midnight() -> None:
    assert parse_when("2026-06-01T10:00:00") == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert parse_when("2026-06-01T10:00:00Z") == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert parse_when("2026-06-01") == datetime(2026, 6, 1, tzinfo=UTC)
    when = datetime(2026, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_when(when) == when and parse_when(when).tzinfo is UTC  # type: ignore[union-attr]
    assert parse_when("") is None and parse_when(None) is None and parse_when("  ") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"colour": "red"}, r"unknown provenance fields for b\.jpg: \['colour'\]"),
        ({"captured_at": "yesterday"}, r"b\.jpg: captured_at is not an ISO 8601 date or date-time: 'yesterday'"),
        ({"captured_at": 1780000000}, r"captured_at must be an ISO 8601 date-time string, not a number"),
        ({"captured_at": 17.5}, r"captured_at must be an ISO 8601 date-time string, not a number"),
        ({"captured_at": "0001-01-01T00:00:00+01:00"}, r"captured_at is out of range"),
        ({"store": {"a": 1}}, r"store must be text, not an object"),
        ({"store": ["a"]}, r"store must be text, not a list"),
        ({"retailer": 42}, r"retailer must be text, not a number"),
        ({"retailer": "x" * 100_000}, rf"retailer is 100000 characters long; at most {TEXT_MAX}"),
        ({"witness_statement": "maybe"}, r"witness_statement must be yes or no, not 'maybe'"),
        ({"witness_statement": 2}, r"witness_statement must be yes or no"),
    ],
)
def test_a_value_that_breaks_a_rule_is_a_typed_error_naming_field_and_file(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ProbeProvenance().updated(values, "b.jpg")


def test_every_failing_field_is_named_at_once() -> None:
    with pytest.raises(InvalidRequest) as caught:
        ProbeProvenance.parse({"store": {"a": 1}, "captured_at": "soon"}, "c.png")
    assert "store must be text" in caught.value.message and "captured_at is not" in caught.value.message
    with pytest.raises(InvalidRequest, match="must be an object"):
        ProbeProvenance().updated(["retailer"], "c.png")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("Yes", True),
        ("1", True),
        (1, True),
        ("on", True),
        ("no", False),
        ("No", False),
        ("false", False),
        ("0", False),
        (0, False),
        ("off", False),
        ("", False),
        (None, False),
    ],
)
def test_yes_no_words(value: object, expected: bool) -> None:
    assert yes_no(value) is expected
    assert ProbeProvenance().updated({"witness_statement": value}).witness_statement is expected


def test_subject_provenance_follows_the_same_rules() -> None:
    subject = SubjectProvenance.parse({"source": "custody suite", "under_18": "no", "conviction_status": ""})
    assert subject.under_18 is False and subject.conviction_status == "unknown"
    with pytest.raises(InvalidRequest, match="conviction_status is 65 characters long; at most 64"):
        SubjectProvenance.parse({"conviction_status": "c" * 65}, "line 3")
    with pytest.raises(InvalidRequest, match="under_18 must be yes or no"):
        SubjectProvenance.parse({"under_18": "unsure"}, "line 3")


def test_the_fields_are_the_probe_image_columns_and_as_utc_reads_naive_as_utc() -> None:
    assert PROBE_FIELDS == (
        "retailer",
        "store",
        "incident_reference",
        "captured_at",
        "supplied_by",
        "witness_statement",
        "camera",
    )
    assert ProbeProvenance().model_dump() == {
        "retailer": "",
        "store": "",
        "incident_reference": "",
        "captured_at": None,
        "supplied_by": "",
        "witness_statement": False,
        "camera": "",
    }
    assert as_utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert as_utc(None) is None
