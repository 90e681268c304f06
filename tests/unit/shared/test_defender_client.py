"""The client's pure parts: identifiers, filters, error bodies, waits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, unquote

import pytest

from shared.defender_client import (
    InvalidIdentifierError,
    backoff_seconds,
    parse_error_body,
    parse_retry_after,
    validate_action_id,
    validate_alert_id,
    validate_device_id,
    validate_sha1,
)
from shared.errors import DefenderQuarantineError
from shared.machine_actions import (
    MachineActionStatus,
    MachineActionType,
    build_machine_action_filter,
    odata_quote,
)

DEVICE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
ACTION = "141408d1-384c-4c19-8b57-ba39e378011a"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

HOSTILE = [
    "../machines/" + DEVICE,
    DEVICE + "/../../alerts",
    DEVICE + "?x=1",
    DEVICE + "#x",
    DEVICE[:-2] + "%2F",
    DEVICE[:-1] + " ",
    " " + DEVICE,
    DEVICE + "\n",
    DEVICE[:-1] + "é",
    DEVICE[:-1] + "\uff10",  # a full-width zero
    DEVICE + "0",
    "",
]


def test_device_id_is_lower_cased() -> None:
    assert validate_device_id(DEVICE.upper()) == DEVICE


@pytest.mark.parametrize("value", [*HOSTILE, None, 42])
def test_hostile_device_id_is_refused_naming_the_argument(value: object) -> None:
    with pytest.raises(InvalidIdentifierError) as raised:
        validate_device_id(value, "machine_id")

    assert raised.value.argument == "machine_id"
    assert "machine_id" in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, DefenderQuarantineError)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_sha1_is_refused_naming_the_argument(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=r"^sha1 "):
        validate_sha1(value)


def test_action_id_accepts_a_guid_and_lower_cases_it() -> None:
    assert validate_action_id(ACTION.upper()) == ACTION


@pytest.mark.parametrize(
    "value",
    [
        ACTION.replace("-", ""),
        "{" + ACTION + "}",
        "urn:uuid:" + ACTION,
        ACTION + "\n",
        ACTION + "/cancel",
        "../" + ACTION,
        "",
    ],
)
def test_action_id_other_than_a_plain_guid_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="action_id"):
        validate_action_id(value)


@pytest.mark.parametrize(
    "value", ["da637472900382838869_1364969609", "ed637472900382838869-1", "x"]
)
def test_alert_ids_of_letters_digits_underscores_hyphens_pass(value: str) -> None:
    assert validate_alert_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "da1/../machines",
        "da1?$top=1",
        "da1#",
        "da1%2F",
        "da 1",
        "dä1",
        "da1\n",
        "a" * 129,
    ],
)
def test_alert_ids_with_anything_else_are_refused(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="alert_id"):
        validate_alert_id(value)


def test_odata_quote_doubles_single_quotes() -> None:
    assert odata_quote("O'Brien") == "'O''Brien'"
    assert odata_quote("' or 1 eq 1 or '") == "''' or 1 eq 1 or '''"


def test_filter_combines_every_condition_with_and() -> None:
    expression = build_machine_action_filter(
        machine_id=DEVICE,
        action_type=MachineActionType.STOP_AND_QUARANTINE_FILE,
        statuses=[MachineActionStatus.PENDING],
        requestor="Analyst@contoso.com",
        created_since=datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
    )

    assert expression == (
        f"machineId eq '{DEVICE}' and type eq 'StopAndQuarantineFile' "
        "and status eq 'Pending' and requestor eq 'Analyst@contoso.com' "
        "and creationDateTimeUtc ge 2025-01-02T03:04:05Z"
    )


def test_filter_with_several_statuses_groups_them_with_or() -> None:
    expression = build_machine_action_filter(
        statuses=[MachineActionStatus.PENDING, MachineActionStatus.IN_PROGRESS]
    )

    assert expression == "(status eq 'Pending' or status eq 'InProgress')"


def test_filter_without_conditions_is_none() -> None:
    assert build_machine_action_filter() is None


def test_filter_quotes_a_hostile_requestor() -> None:
    expression = build_machine_action_filter(requestor="x' or type eq 'Offboard")

    assert expression == "requestor eq 'x'' or type eq ''Offboard'"


def test_filter_converts_created_since_to_utc() -> None:
    plus_two = datetime(2025, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))

    expression = build_machine_action_filter(created_since=plus_two)

    assert expression == "creationDateTimeUtc ge 2025-01-02T03:00:00Z"


def test_filter_refuses_naive_created_since() -> None:
    with pytest.raises(ValueError, match="time zone"):
        build_machine_action_filter(created_since=datetime(2025, 1, 2))


def test_filter_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="Unknown"):
        build_machine_action_filter(statuses=[MachineActionStatus.UNKNOWN])


def test_error_body_of_defender_gives_code_message_and_correlation_id() -> None:
    body = {
        "error": {
            "code": "ResourceNotFound",
            "message": "Machine 123 was not found",
            "target": "43f4cb08-8fac-4b65-9db1-745c2ae65f3a",
        }
    }

    error = parse_error_body(json.dumps(body).encode(), "application/json")

    assert error.code == "ResourceNotFound"
    assert error.message == "Machine 123 was not found"
    assert error.correlation_id == "43f4cb08-8fac-4b65-9db1-745c2ae65f3a"


def test_error_body_with_empty_code_keeps_the_message() -> None:
    body = (
        b'{"error":{"code":"","message":"The query specified in the URI is not '
        b'valid.","details":[]}}'
    )

    error = parse_error_body(body)

    assert error.code == ""
    assert error.message.startswith("The query specified")
    assert error.correlation_id is None


def test_empty_error_body_is_described() -> None:
    error = parse_error_body(b"  ", "application/json")

    assert (error.code, error.correlation_id) == ("", None)
    assert "no body" in error.message


def test_html_error_body_from_a_proxy_is_summarised_by_its_title() -> None:
    html = b"<html><head><title>502 Bad\n Gateway</title></head><body>" + b"x" * 5000

    error = parse_error_body(html, "text/html; charset=utf-8")

    assert error.code == ""
    assert "text/html" in error.message
    assert "502 Bad Gateway" in error.message
    assert len(error.message) <= 500


def test_plain_text_error_body_is_quoted_briefly() -> None:
    error = parse_error_body(b"upstream connect error", "text/plain")

    assert "upstream connect error" in error.message


def test_json_error_body_without_error_key_uses_a_top_level_message() -> None:
    error = parse_error_body(b'{"message": "Rate limit is exceeded."}')

    assert error.code == ""
    assert error.message == "Rate limit is exceeded."


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'{"error": "oops"}', b'"text"', b'{"error": {"code": 7}}']
)
def test_odd_json_error_bodies_never_raise(body: bytes) -> None:
    error = parse_error_body(body)

    assert error.code == ""
    assert error.correlation_id is None


def test_huge_error_message_is_truncated() -> None:
    body = json.dumps({"error": {"code": "BadRequest", "message": "m" * 10_000}})

    error = parse_error_body(body.encode())

    assert error.code == "BadRequest"
    assert len(error.message) == 500
    assert error.message.endswith("…")


def test_error_body_beyond_a_megabyte_is_not_parsed() -> None:
    error = parse_error_body(b"{" + b" " * 2_000_000 + b"}")

    assert "was not read" in error.message


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("30", 30.0), (" 7 ", 7.0), ("0", 0.0), ("1.5", 1.5), ("-5", 0.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_as_http_date_is_measured_from_now() -> None:
    later = NOW + timedelta(seconds=90)
    header = later.strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert parse_retry_after(header, NOW) == 90.0


def test_retry_after_date_in_the_past_means_no_wait() -> None:
    assert parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "Mon, 99 Foo"])
def test_retry_after_absent_or_garbage_is_none(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


@pytest.mark.parametrize(
    ("retry", "ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]
)
def test_backoff_doubles_from_half_a_second_up_to_eight(
    retry: int, ceiling: float
) -> None:
    assert backoff_seconds(retry, 1.0) == ceiling
    assert backoff_seconds(retry, 0.5) == ceiling / 2
    assert backoff_seconds(retry, 0.0) == 0.0


def test_backoff_clamps_jitter_outside_zero_to_one() -> None:
    assert backoff_seconds(2, 7.0) == 2.0
    assert backoff_seconds(2, -1.0) == 0.0


def test_quoted_filter_survives_url_encoding_round_trip() -> None:
    expression = build_machine_action_filter(requestor="a&b=c'd#e")
    assert expression is not None

    assert unquote(quote(expression, safe="")) == expression
    assert "&" not in quote(expression, safe="")
