"""The client against a faked Defender (the ``responses`` transport): calls,
retries, waits, errors, and the unknown-outcome recovery of a submission.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from azure.core.exceptions import ClientAuthenticationError
from urllib3.exceptions import MaxRetryError, NewConnectionError

from shared.credentials import CredentialKind
from shared.defender_client import DefenderClient, InvalidIdentifierError
from shared.errors import (
    ApiAuthError,
    ApiOutcomeUnknown,
    ApiRequestError,
    ApiResponseError,
    ApiThrottled,
)
from shared.machine_actions import (
    MachineActionStatus,
    MachineActionType,
    SubmissionOutcome,
)
from shared.settings import Settings

API = "https://api.security.microsoft.com/api"
DEVICE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
OTHER_SHA1 = "0123456789abcdef0123456789abcdef01234567"
ACTION_ID = "141408d1-384c-4c19-8b57-ba39e378011a"
SUBMIT_URL = f"{API}/machines/{DEVICE}/StopAndQuarantineFile"
ACTIONS_URL = f"{API}/machineactions"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


class FakeTokens:
    def __init__(self) -> None:
        self.issued = 0
        self.forced = 0

    @property
    def kind(self) -> CredentialKind:
        return CredentialKind.CLIENT_SECRET

    def get_token(self, *, force_refresh: bool = False) -> str:
        self.forced += force_refresh
        if force_refresh or not self.issued:
            self.issued += 1
        return f"token-{self.issued}"


class FailingTokens(FakeTokens):
    def get_token(self, *, force_refresh: bool = False) -> str:
        raise ClientAuthenticationError("AADSTS7000215: Invalid client secret")


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="tokens")
def _tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture(name="client")
def _client(clock: FakeClock, tokens: FakeTokens) -> Iterator[DefenderClient]:
    client = DefenderClient(
        api_url="https://api.security.microsoft.com",
        tokens=tokens,
        max_retries=3,
        max_wait_seconds=10.0,
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda: 1.0,
    )
    with client:
        yield client


@pytest.fixture(name="fake")
def _fake() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def action(
    *,
    sha1: str = SHA1,
    status: str = "Pending",
    created: datetime = START,
    action_id: str = ACTION_ID,
) -> dict[str, Any]:
    return {
        "id": action_id,
        "type": "StopAndQuarantineFile",
        "status": status,
        "machineId": DEVICE,
        "creationDateTimeUtc": created.isoformat().replace("+00:00", "Z"),
        "lastUpdateDateTimeUtc": created.isoformat().replace("+00:00", "Z"),
        "relatedFileInfo": {"fileIdentifier": sha1, "fileIdentifierType": "Sha1"},
    }


def error(code: str, message: str = "m", target: str = "corr-1") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "target": target}}


def query_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def posts(fake: responses.RequestsMock) -> list[Any]:
    return [call for call in fake.calls if call.request.method == "POST"]


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, SUBMIT_URL, reason))


def test_submit_sends_documented_body_and_headers(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, json=action(), status=201)

    submission = client.submit_stop_and_quarantine(
        DEVICE.upper(), SHA1.upper(), "alert da1"
    )

    assert submission.outcome is SubmissionOutcome.CREATED
    assert submission.action is not None
    assert submission.action.id == ACTION_ID
    (call,) = fake.calls
    assert json.loads(call.request.body or b"") == {
        "Comment": "alert da1",
        "Sha1": SHA1,
    }
    assert call.request.headers["Authorization"] == "Bearer token-1"
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.headers["User-Agent"] == "defender-quarantine/0.1.0"


def test_submit_answered_with_an_older_action_is_already_in_progress(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, json=action(created=START - timedelta(hours=2)), status=201)

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.ALREADY_IN_PROGRESS


def test_active_request_already_exists_is_a_result_with_the_open_action(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, json=error("ActiveRequestAlreadyExists"), status=400)
    fake.get(
        ACTIONS_URL,
        json={
            "value": [
                action(
                    sha1=OTHER_SHA1, action_id="00000000-0000-0000-0000-000000000001"
                ),
                action(
                    status="Succeeded", action_id="00000000-0000-0000-0000-000000000002"
                ),
                action(status="InProgress", created=START - timedelta(hours=1)),
            ]
        },
    )

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.ALREADY_IN_PROGRESS
    assert submission.action is not None
    assert submission.action.id == ACTION_ID
    assert submission.action.status is MachineActionStatus.IN_PROGRESS
    (expression,) = query_of(fake.calls[1])["$filter"]
    assert expression.startswith(
        f"machineId eq '{DEVICE}' and type eq 'StopAndQuarantineFile' and "
        "creationDateTimeUtc ge "
    )


def test_active_request_already_exists_without_a_readable_list_has_no_action(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, json=error("ActiveRequestAlreadyExists"), status=400)
    fake.get(ACTIONS_URL, json=error("Forbidden"), status=403)

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.ALREADY_IN_PROGRESS
    assert submission.action is None


def test_lost_answer_recovers_the_action_without_resending(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    fake.get(
        ACTIONS_URL, json={"value": [action(created=START + timedelta(seconds=1))]}
    )

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.RECOVERED_AFTER_UNKNOWN
    assert submission.action is not None
    assert submission.action.id == ACTION_ID
    assert len(posts(fake)) == 1


def test_dropped_connection_with_no_action_found_is_resent_once(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    dropped = requests.ConnectionError(
        ConnectionResetError("Connection aborted: RemoteDisconnected")
    )
    fake.post(SUBMIT_URL, body=dropped)
    fake.post(SUBMIT_URL, json=action(), status=201)
    fake.get(ACTIONS_URL, json={"value": [action(sha1=OTHER_SHA1)]})

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.CREATED
    assert len(posts(fake)) == 2
    assert clock.sleeps == []


def test_old_finished_action_for_the_file_does_not_stop_a_resend(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    fake.post(SUBMIT_URL, json=action(), status=201)
    finished = action(status="Succeeded", created=START - timedelta(days=1))
    fake.get(ACTIONS_URL, json={"value": [finished]})

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.CREATED
    assert len(posts(fake)) == 2


def test_lost_answer_with_an_older_open_action_is_already_in_progress(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    older = action(status="Pending", created=START - timedelta(hours=5))
    fake.get(ACTIONS_URL, json={"value": [older]})

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.ALREADY_IN_PROGRESS
    assert len(posts(fake)) == 1


def test_lost_answer_that_cannot_be_checked_is_outcome_unknown(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    fake.get(ACTIONS_URL, json=error("Forbidden"), status=403)

    with pytest.raises(ApiOutcomeUnknown, match="could not be read"):
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert len(posts(fake)) == 1


def test_answers_lost_every_time_end_as_outcome_unknown(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    fake.get(ACTIONS_URL, json={"value": []})

    with pytest.raises(ApiOutcomeUnknown):
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert len(posts(fake)) == 4


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_error_on_submit_is_checked_before_resending(
    client: DefenderClient, fake: responses.RequestsMock, status: int
) -> None:
    fake.post(SUBMIT_URL, body="<html>gateway</html>", status=status)
    fake.get(ACTIONS_URL, json={"value": [action(created=START)]})

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.RECOVERED_AFTER_UNKNOWN
    assert len(posts(fake)) == 1


def test_refused_connection_is_resent_after_backoff(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    fake.post(SUBMIT_URL, body=refused())
    fake.post(SUBMIT_URL, json=action(), status=201)

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.CREATED
    assert clock.sleeps == [0.5]
    assert [call.request.method for call in fake.calls] == ["POST", "POST"]


def test_refused_every_time_is_a_request_error_after_bounded_backoff(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    fake.get(f"{API}/machines/{DEVICE}", body=refused())

    with pytest.raises(ApiRequestError, match="could not reach Defender"):
        client.get_machine(DEVICE)

    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(fake.calls) == 4


def test_read_timeout_on_a_read_is_retried(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    url = f"{API}/machineactions/{ACTION_ID}"
    fake.get(url, body=requests.exceptions.ReadTimeout())
    fake.get(url, json=action(status="Succeeded"))

    result = client.get_machine_action(ACTION_ID.upper())

    assert result.status is MachineActionStatus.SUCCEEDED
    assert clock.sleeps == [0.5]


def test_server_errors_back_off_exponentially_then_succeed(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    url = f"{API}/files/{SHA1}"
    fake.get(url, json=error("InternalServerError"), status=500)
    fake.get(url, body="", status=503)
    fake.get(url, json={"sha1": SHA1, "signer": "Contoso"})

    profile = client.get_file(SHA1)

    assert profile.signer == "Contoso"
    assert clock.sleeps == [0.5, 1.0]


def test_server_errors_past_the_retries_raise_with_defender_words(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    fake.get(
        f"{API}/files/{SHA1}",
        json=error("InternalServerError", "boom", "c-9"),
        status=500,
    )

    with pytest.raises(ApiResponseError) as raised:
        client.get_file(SHA1)

    assert raised.value.status == 500
    assert raised.value.code == "InternalServerError"
    assert raised.value.correlation_id == "c-9"
    assert raised.value.route == "files/{id}"
    assert raised.value.is_retryable
    assert len(clock.sleeps) == 3


def test_throttled_with_short_retry_after_waits_that_long(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    url = f"{API}/machines/{DEVICE}"
    fake.get(
        url, json=error("TooManyRequests"), status=429, headers={"Retry-After": "3"}
    )
    fake.get(url, json={"id": DEVICE})

    client.get_machine(DEVICE)

    assert clock.sleeps == [3.0]


def test_throttled_with_long_retry_after_defers_at_once(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    fake.post(
        SUBMIT_URL,
        json=error("TooManyRequests", "quota", "c-1"),
        status=429,
        headers={"Retry-After": "60"},
    )

    with pytest.raises(ApiThrottled) as raised:
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert raised.value.retry_at == START + timedelta(seconds=60)
    assert raised.value.code == "TooManyRequests"
    assert raised.value.correlation_id == "c-1"
    assert clock.sleeps == []
    assert len(fake.calls) == 1


def test_throttled_with_http_date_retry_after_defers_to_that_date(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    fake.get(
        f"{API}/machines/{DEVICE}",
        body="",
        status=429,
        headers={"Retry-After": "Sat, 01 Mar 2025 12:05:00 GMT"},
    )

    with pytest.raises(ApiThrottled) as raised:
        client.get_machine(DEVICE)

    assert raised.value.retry_at == START + timedelta(minutes=5)
    assert raised.value.code == "TooManyRequests"
    assert clock.sleeps == []


def test_throttled_without_retry_after_backs_off_then_defers(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    fake.get(f"{API}/machines/{DEVICE}", body="", status=429)

    with pytest.raises(ApiThrottled) as raised:
        client.get_machine(DEVICE)

    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert raised.value.retry_at == clock.now + timedelta(seconds=4.0)
    assert len(fake.calls) == 4


def test_throttle_bound_is_the_constructor_argument(
    fake: responses.RequestsMock, clock: FakeClock, tokens: FakeTokens
) -> None:
    client = DefenderClient(
        api_url="https://api.security.microsoft.com",
        tokens=tokens,
        max_wait_seconds=2.0,
        clock=clock,
        sleep=clock.sleep,
    )
    fake.get(f"{API}/machines/{DEVICE}", status=429, headers={"Retry-After": "3"})

    with pytest.raises(ApiThrottled):
        client.get_machine(DEVICE)

    assert clock.sleeps == []


def test_unauthorized_renews_the_token_once_and_retries(
    client: DefenderClient, fake: responses.RequestsMock, tokens: FakeTokens
) -> None:
    url = f"{API}/machines/{DEVICE}"
    fake.get(url, json=error("Unauthorized"), status=401)
    fake.get(url, json={"id": DEVICE})

    client.get_machine(DEVICE)

    assert tokens.forced == 1
    assert [c.request.headers["Authorization"] for c in fake.calls] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


def test_unauthorized_twice_is_an_auth_error(
    client: DefenderClient, fake: responses.RequestsMock, tokens: FakeTokens
) -> None:
    fake.get(
        f"{API}/machines/{DEVICE}", json=error("Unauthorized", "expired"), status=401
    )

    with pytest.raises(ApiAuthError) as raised:
        client.get_machine(DEVICE)

    assert raised.value.status == 401
    assert tokens.forced == 1
    assert len(fake.calls) == 2


def test_forbidden_is_an_auth_error_without_retry(
    client: DefenderClient, fake: responses.RequestsMock, clock: FakeClock
) -> None:
    message = (
        "The application does not have any of the required application "
        "permissions (Machine.StopAndQuarantine) to access the resource."
    )
    fake.post(SUBMIT_URL, json=error("Forbidden", message), status=403)

    with pytest.raises(ApiAuthError) as raised:
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert raised.value.code == "Forbidden"
    assert "Machine.StopAndQuarantine" in raised.value.message
    assert not raised.value.is_retryable
    assert len(fake.calls) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "InvalidRequestBody"),
        (400, "OsPlatformNotSupported"),
        (404, "ResourceNotFound"),
    ],
)
def test_client_errors_are_not_retried(
    client: DefenderClient, fake: responses.RequestsMock, status: int, code: str
) -> None:
    fake.post(
        SUBMIT_URL, json=error(code, "Sha1 x was not found in machine y"), status=status
    )

    with pytest.raises(ApiResponseError) as raised:
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert type(raised.value) is ApiResponseError
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.correlation_id == "corr-1"
    assert len(fake.calls) == 1


def test_redirect_is_not_followed(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.get(
        f"{API}/machines/{DEVICE}",
        status=302,
        headers={"Location": "https://elsewhere.example.com/steal"},
    )

    with pytest.raises(ApiResponseError) as raised:
        client.get_machine(DEVICE)

    assert raised.value.status == 302
    assert len(fake.calls) == 1


def test_success_that_is_not_json_is_an_unexpected_response(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.get(f"{API}/machines/{DEVICE}", body="<html>portal</html>", status=200)

    with pytest.raises(ApiResponseError) as raised:
        client.get_machine(DEVICE)

    assert raised.value.code == "UnexpectedResponse"


def test_success_of_the_wrong_shape_is_an_unexpected_response(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.get(ACTIONS_URL, json={"values": []})

    with pytest.raises(ApiResponseError, match="no value array"):
        client.list_machine_actions()


def test_token_that_cannot_be_obtained_is_a_request_error(
    fake: responses.RequestsMock, clock: FakeClock
) -> None:
    client = DefenderClient(
        api_url="https://api.security.microsoft.com",
        tokens=FailingTokens(),
        clock=clock,
        sleep=clock.sleep,
    )

    with pytest.raises(ApiRequestError, match="AADSTS7000215"):
        client.get_machine(DEVICE)

    assert len(fake.calls) == 0


def test_permission_check_without_a_token_reports_why(clock: FakeClock) -> None:
    client = DefenderClient(
        api_url="https://api.security.microsoft.com", tokens=FailingTokens()
    )

    report = client.check_permissions()

    assert not report.decoded
    assert "AADSTS7000215" in report.notes[0]


def test_list_machine_actions_encodes_filter_and_top(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.get(ACTIONS_URL, json={"value": [action(), action(status="Weird")]})

    actions = client.list_machine_actions(
        machine_id=DEVICE,
        action_type=MachineActionType.STOP_AND_QUARANTINE_FILE,
        statuses=[MachineActionStatus.PENDING, MachineActionStatus.IN_PROGRESS],
        requestor="O'Brien & co #1",
        created_since=START,
        top=25,
    )

    assert [a.status for a in actions] == [
        MachineActionStatus.PENDING,
        MachineActionStatus.UNKNOWN,
    ]
    raw_query = urlsplit(fake.calls[0].request.url).query
    assert " " not in raw_query
    assert "#" not in raw_query
    assert query_of(fake.calls[0]) == {
        "$filter": [
            f"machineId eq '{DEVICE}' and type eq 'StopAndQuarantineFile' and "
            "(status eq 'Pending' or status eq 'InProgress') and "
            "requestor eq 'O''Brien & co #1' and "
            "creationDateTimeUtc ge 2025-03-01T12:00:00Z"
        ],
        "$top": ["25"],
    }


@pytest.mark.parametrize("top", [0, 10_001])
def test_list_machine_actions_refuses_top_out_of_range(
    client: DefenderClient, top: int
) -> None:
    with pytest.raises(ValueError, match="top"):
        client.list_machine_actions(top=top)


def test_av_info_takes_the_freshest_row_of_the_machine(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    rows = [
        {
            "machineId": DEVICE,
            "avMode": "2",
            "dataRefreshTimestamp": "2025-02-01T00:00:00Z",
        },
        {
            "machineId": DEVICE,
            "avMode": "1",
            "dataRefreshTimestamp": "2025-02-03T00:00:00Z",
        },
        {
            "machineId": "f" * 40,
            "avMode": "0",
            "dataRefreshTimestamp": "2025-02-09T00:00:00Z",
        },
    ]
    fake.get(f"{API}/deviceavinfo", json={"value": rows})

    info = client.get_av_info(DEVICE)

    assert info is not None
    assert info.av_mode == "1"
    assert query_of(fake.calls[0]) == {"$filter": [f"machineId eq '{DEVICE}'"]}


def test_av_info_of_a_machine_without_rows_is_none(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.get(f"{API}/deviceavinfo", json={"value": []})

    assert client.get_av_info(DEVICE) is None


def test_alert_is_fetched_with_its_evidence_and_kept_raw(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    alert_id = "da637472900382838869_1364969609"
    document = {"id": alert_id, "machineId": DEVICE, "evidence": [{"sha1": SHA1}]}
    fake.get(f"{API}/alerts/{alert_id}", json=document)

    alert = client.get_alert(alert_id)

    assert alert.id == alert_id
    assert alert.document == document
    assert query_of(fake.calls[0]) == {"$expand": ["evidence"]}


def test_cancel_sends_the_comment_and_returns_the_action(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    fake.post(
        f"{API}/machineactions/{ACTION_ID}/cancel", json=action(status="Cancelled")
    )

    cancelled = client.cancel_machine_action(ACTION_ID, "false positive")

    assert cancelled.status is MachineActionStatus.CANCELLED
    assert json.loads(fake.calls[0].request.body or b"") == {
        "Comment": "false positive"
    }


@pytest.mark.parametrize(
    "hostile",
    ["../alerts", DEVICE + "/../x", DEVICE[:-3] + "%2F", DEVICE + "?a", DEVICE + "#"],
)
def test_hostile_identifiers_send_nothing(
    client: DefenderClient, fake: responses.RequestsMock, hostile: str
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.get_machine(hostile),
        lambda: client.get_file(hostile),
        lambda: client.get_av_info(hostile),
        lambda: client.submit_stop_and_quarantine(hostile, SHA1, "c"),
        lambda: client.submit_stop_and_quarantine(DEVICE, hostile, "c"),
        lambda: client.get_machine_action(hostile),
        lambda: client.cancel_machine_action(hostile, "c"),
        lambda: client.get_alert(hostile),
        lambda: client.list_machine_actions(machine_id=hostile),
    ]

    for call in calls:
        with pytest.raises(InvalidIdentifierError):
            call()

    assert len(fake.calls) == 0


def test_empty_comment_is_refused_before_sending(
    client: DefenderClient, fake: responses.RequestsMock
) -> None:
    with pytest.raises(ValueError, match="comment"):
        client.submit_stop_and_quarantine(DEVICE, SHA1, "  ")

    assert len(fake.calls) == 0


def test_each_request_logs_its_route_template_and_each_retry_its_wait(
    client: DefenderClient,
    fake: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"{API}/machines/{DEVICE}"
    fake.get(url, status=503)
    fake.get(url, json={"id": DEVICE})
    caplog.set_level(logging.DEBUG, logger="shared.defender_client")

    client.get_machine(DEVICE)

    requests_logged = [r for r in caplog.records if r.msg == "defender.request"]
    assert [
        (r.__dict__["route"], r.__dict__["status"], r.__dict__["attempt"])
        for r in requests_logged
    ] == [
        ("machines/{id}", 503, 1),
        ("machines/{id}", 200, 2),
    ]
    assert all(r.levelno == logging.DEBUG for r in requests_logged)
    (retry,) = [r for r in caplog.records if r.msg == "defender.retry"]
    assert retry.levelno == logging.INFO
    assert retry.__dict__["reason"] == "status_503"
    assert retry.__dict__["wait_seconds"] == 0.5
    assert all(DEVICE not in r.getMessage() for r in caplog.records)
    assert all("token-1" not in str(r.__dict__) for r in caplog.records)


def test_session_leaves_retries_to_the_client(client: DefenderClient) -> None:
    adapter = client._session.get_adapter("https://api.security.microsoft.com")

    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]


def test_from_settings_uses_override_host_and_fixed_token_on_loopback(
    fake: responses.RequestsMock,
) -> None:
    settings = Settings.from_env(
        {
            "DEFENDER_API_URL": "http://127.0.0.1:8650",
            "DEFENDER_TOKEN": "local-token",
            "DEFENDER_MAX_RETRIES": "0",
        }
    )
    fake.get(f"http://127.0.0.1:8650/api/machines/{DEVICE}", json={"id": DEVICE})

    with DefenderClient.from_settings(settings) as client:
        machine = client.get_machine(DEVICE)

    assert machine.id == DEVICE
    assert fake.calls[0].request.headers["Authorization"] == "Bearer local-token"


def test_token_is_renewed_only_for_the_unauthorized_answer(
    client: DefenderClient, fake: responses.RequestsMock, tokens: FakeTokens
) -> None:
    url = f"{API}/machines/{DEVICE}"
    fake.get(url, json=error("Unauthorized"), status=401)
    fake.get(url, status=503)
    fake.get(url, status=503)
    fake.get(url, json={"id": DEVICE})

    client.get_machine(DEVICE)

    assert tokens.forced == 1
    assert len(fake.calls) == 4
