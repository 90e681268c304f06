"""The $filter subset the simulator understands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulator.errors import ApiFailure
from simulator.odata import Comparison, FieldKind, matches, parse_count, parse_filter

_FIELDS = {
    "machineId": FieldKind.STRING,
    "creationDateTimeUtc": FieldKind.TIME,
    "rbacGroupId": FieldKind.NUMBER,
}


def test_conjunction_parses_into_comparisons_with_canonical_names() -> None:
    parsed = parse_filter(
        "MACHINEID eq 'a''b' AND creationDateTimeUtc ge 2025-01-06T09:00:00Z "
        "and rbacGroupId ne 4",
        _FIELDS,
    )

    assert parsed == [
        Comparison("machineId", "eq", "a'b"),
        Comparison(
            "creationDateTimeUtc",
            "ge",
            datetime(2025, 1, 6, 9, tzinfo=UTC).timestamp(),
        ),
        Comparison("rbacGroupId", "ne", 4),
    ]


def test_bare_date_means_midnight_utc() -> None:
    [comparison] = parse_filter("creationDateTimeUtc gt 2025-01-06", _FIELDS)

    assert comparison.value == datetime(2025, 1, 6, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "machineId",
        "machineId eq",
        "machineId eq 'a' and",
        "machineId eq 'a' or machineId eq 'b'",
        "(machineId eq 'a')",
        "contains(machineId, 'a')",
        "machineId eq a",
        "machineId lt 'a'",
        "machineId eq 3",
        "unknown eq 'a'",
        "creationDateTimeUtc ge 'yesterday'",
        "creationDateTimeUtc ge 2025-13-45",
        "rbacGroupId eq 1.5",
        "machineId 'a' eq",
    ],
)
def test_unsupported_or_malformed_filter_is_odata_error(text: str) -> None:
    with pytest.raises(ApiFailure) as failure:
        parse_filter(text, _FIELDS)

    assert failure.value.status == 400
    assert failure.value.code == "ODataError"


def test_matches_applies_every_comparison() -> None:
    comparisons = parse_filter(
        "machineId eq 'a' and creationDateTimeUtc lt 1970-01-01T00:01:00Z", _FIELDS
    )

    assert matches(comparisons, {"machineId": "a", "creationDateTimeUtc": 59.0})
    assert not matches(comparisons, {"machineId": "a", "creationDateTimeUtc": 60.0})
    assert not matches(comparisons, {"machineId": "A", "creationDateTimeUtc": 0.0})


def test_ordering_never_matches_a_missing_value() -> None:
    comparisons = parse_filter("rbacGroupId ge 0", _FIELDS)

    assert not matches(comparisons, {"rbacGroupId": None})


@pytest.mark.parametrize(("text", "count"), [("0", 0), ("10000", 10000)])
def test_count_within_bounds_parses(text: str, count: int) -> None:
    assert parse_count("$top", text, maximum=10000) == count


@pytest.mark.parametrize("text", ["10001", "-1", "1.0", "ten", ""])
def test_count_out_of_bounds_or_not_whole_is_odata_error(text: str) -> None:
    with pytest.raises(ApiFailure) as failure:
        parse_count("$top", text, maximum=10000)

    assert failure.value.code == "ODataError"
