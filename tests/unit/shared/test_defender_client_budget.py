"""The client with an API budget, against a faked Defender (``responses``): every
request spends first, a refusal sends nothing, and a 429 holds the API at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from azure.core.exceptions import ServiceRequestError

from shared.budget import BucketState, MemoryBudget, Window
from shared.credentials import CredentialKind
from shared.defender_client import DefenderClient
from shared.errors import (
    ApiBudgetExhausted,
    ApiOutcomeUnknown,
    ApiRequestError,
    ApiThrottled,
)
from shared.machine_actions import SubmissionOutcome
from shared.settings import Settings

API = "https://api.security.microsoft.com/api"
DEVICE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
ACTION_ID = "141408d1-384c-4c19-8b57-ba39e378011a"
MACHINE_URL = f"{API}/machines/{DEVICE}"
SUBMIT_URL = f"{API}/machines/{DEVICE}/StopAndQuarantineFile"
ACTIONS_URL = f"{API}/machineactions"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

MACHINE = "machines/{id}"
SUBMIT = "machines/{id}/StopAndQuarantineFile"
ACTIONS = "machineactions"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Tokens:
    @property
    def kind(self) -> CredentialKind:
        return CredentialKind.CLIENT_SECRET

    def get_token(self, *, force_refresh: bool = False) -> str:
        return "token"


class RecordingBudget:
    """A MemoryBudget that remembers what the client asked of it."""

    def __init__(self, inner: MemoryBudget) -> None:
        self.inner = inner
        self.spent: list[str] = []
        self.holds: list[tuple[str, datetime]] = []

    def spend(self, route: str) -> None:
        self.spent.append(route)
        self.inner.spend(route)

    def hold(self, route: str, until: datetime) -> None:
        self.holds.append((route, until))
        self.inner.hold(route, until)

    def snapshot(self) -> list[BucketState]:
        return self.inner.snapshot()


class BrokenStorageBudget:
    """A budget whose table cannot be reached."""

    def spend(self, route: str) -> None:
        raise ServiceRequestError("table endpoint unreachable")

    def hold(self, route: str, until: datetime) -> None:
        raise ServiceRequestError("table endpoint unreachable")

    def snapshot(self) -> list[BucketState]:
        return []


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"the client slept {seconds} s with a shared budget")


@pytest.fixture(name="clock")
def _clock() -> Clock:
    return Clock()


@pytest.fixture(name="budget")
def _budget(clock: Clock) -> RecordingBudget:
    return RecordingBudget(MemoryBudget(clock=clock))


@pytest.fixture(name="fake")
def _fake() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_client(clock: Clock, budget: Any, **overrides: Any) -> DefenderClient:
    arguments: dict[str, Any] = {
        "api_url": "https://api.security.microsoft.com",
        "tokens": Tokens(),
        "max_retries": 3,
        "max_wait_seconds": 10.0,
        "clock": clock,
        "sleep": no_sleep,
        "jitter": lambda: 1.0,
        "budget": budget,
    }
    arguments.update(overrides)
    return DefenderClient(**arguments)


@pytest.fixture(name="client")
def _client(clock: Clock, budget: RecordingBudget) -> Iterator[DefenderClient]:
    with make_client(clock, budget) as client:
        yield client


def action(created: datetime = START) -> dict[str, Any]:
    stamp = created.isoformat().replace("+00:00", "Z")
    return {
        "id": ACTION_ID,
        "type": "StopAndQuarantineFile",
        "status": "Pending",
        "machineId": DEVICE,
        "creationDateTimeUtc": stamp,
        "lastUpdateDateTimeUtc": stamp,
        "relatedFileInfo": {"fileIdentifier": SHA1, "fileIdentifierType": "Sha1"},
    }


def throttled(retry_after: str | None = None) -> dict[str, Any]:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": "TooManyRequests", "message": "quota", "target": "c"}}
    return {"json": body, "status": 429, "headers": headers}


def test_each_request_spends_on_its_route_template(
    client: DefenderClient, fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    fake.get(MACHINE_URL, json={"id": DEVICE})
    fake.get(f"{API}/deviceavinfo", json={"value": []})
    fake.get(f"{API}/machineactions/{ACTION_ID}", json=action())
    fake.post(SUBMIT_URL, json=action(), status=201)

    client.get_machine(DEVICE)
    client.get_av_info(DEVICE)
    client.get_machine_action(ACTION_ID)
    client.submit_stop_and_quarantine(DEVICE, SHA1, "alert da1")

    assert budget.spent == [
        MACHINE,
        "deviceavinfo",
        "machineactions/{id}",
        SUBMIT,
    ]


def test_budget_refusal_raises_and_sends_nothing(
    client: DefenderClient, fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    budget.inner.hold(SUBMIT, START + timedelta(seconds=45))

    with pytest.raises(ApiBudgetExhausted) as refused:
        client.submit_stop_and_quarantine(DEVICE, SHA1, "alert da1")

    assert refused.value.route == SUBMIT
    assert refused.value.retry_at == START + timedelta(seconds=45)
    assert len(fake.calls) == 0


def test_every_retry_spends_again(
    clock: Clock, fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    fake.get(MACHINE_URL, status=503)
    fake.get(MACHINE_URL, json={"id": DEVICE})
    sleeps: list[float] = []

    with make_client(clock, budget, sleep=sleeps.append) as client:
        client.get_machine(DEVICE)

    assert budget.spent == [MACHINE, MACHINE]
    assert sleeps == [0.5]


def test_refusal_between_retries_stops_at_once(
    clock: Clock, fake: responses.RequestsMock
) -> None:
    budget = MemoryBudget(clock=clock, windows=lambda route: (Window(60, 1),))
    fake.get(MACHINE_URL, status=503)
    sleeps: list[float] = []

    with (
        make_client(clock, budget, sleep=sleeps.append) as client,
        pytest.raises(ApiBudgetExhausted),
    ):
        client.get_machine(DEVICE)

    assert len(fake.calls) == 1
    assert sleeps == [0.5]


@pytest.mark.parametrize("retry_after", ["3", "60"])
def test_throttled_with_a_budget_holds_the_api_and_raises_without_sleeping(
    client: DefenderClient,
    fake: responses.RequestsMock,
    budget: RecordingBudget,
    retry_after: str,
) -> None:
    fake.get(MACHINE_URL, **throttled(retry_after))
    until = START + timedelta(seconds=int(retry_after))

    with pytest.raises(ApiThrottled) as raised:
        client.get_machine(DEVICE)

    assert raised.value.retry_at == until
    assert budget.holds == [(MACHINE, until)]
    assert len(fake.calls) == 1


def test_throttled_without_retry_after_holds_for_the_longest_first_backoff(
    client: DefenderClient, fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    fake.get(MACHINE_URL, **throttled())

    with pytest.raises(ApiThrottled) as raised:
        client.get_machine(DEVICE)

    assert raised.value.retry_at == START + timedelta(seconds=0.5)
    assert budget.holds == [(MACHINE, START + timedelta(seconds=0.5))]


def test_after_a_429_the_api_is_not_called_until_the_hold_passes(
    client: DefenderClient,
    fake: responses.RequestsMock,
    budget: RecordingBudget,
    clock: Clock,
) -> None:
    fake.post(SUBMIT_URL, **throttled("30"))
    fake.post(SUBMIT_URL, json=action(), status=201)
    fake.get(MACHINE_URL, json={"id": DEVICE})
    with pytest.raises(ApiThrottled):
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    with pytest.raises(ApiBudgetExhausted) as refused:
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")
    client.get_machine(DEVICE)

    assert refused.value.retry_at == START + timedelta(seconds=30)
    assert [call.request.method for call in fake.calls] == ["POST", "GET"]

    clock.now = START + timedelta(seconds=30)
    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.CREATED


def test_without_a_budget_a_short_429_is_still_waited_out(
    clock: Clock, fake: responses.RequestsMock
) -> None:
    fake.get(MACHINE_URL, **throttled("3"))
    fake.get(MACHINE_URL, json={"id": DEVICE})
    sleeps: list[float] = []

    with make_client(clock, None, sleep=sleeps.append) as client:
        client.get_machine(DEVICE)

    assert sleeps == [3.0]
    assert len(fake.calls) == 2


def test_lost_answer_whose_check_has_no_budget_is_outcome_unknown(
    client: DefenderClient, fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    budget.inner.hold(ACTIONS, START + timedelta(minutes=5))

    with pytest.raises(ApiOutcomeUnknown) as raised:
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert isinstance(raised.value.__cause__, ApiBudgetExhausted)
    assert raised.value.__cause__.route == ACTIONS
    assert [call.request.method for call in fake.calls] == ["POST"]


def test_lost_answer_is_still_recovered_with_budget_left(
    client: DefenderClient, fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    fake.get(ACTIONS_URL, json={"value": [action(START + timedelta(seconds=1))]})

    submission = client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert submission.outcome is SubmissionOutcome.RECOVERED_AFTER_UNKNOWN
    assert budget.spent == [SUBMIT, ACTIONS]


def test_resend_after_a_checked_lost_answer_spends_and_may_be_refused(
    clock: Clock, fake: responses.RequestsMock
) -> None:
    def one_submission_a_minute(route: str) -> tuple[Window, ...]:
        return (Window(60, 1),) if route == SUBMIT else (Window(60, 100),)

    budget = MemoryBudget(clock=clock, windows=one_submission_a_minute)
    fake.post(SUBMIT_URL, body=requests.exceptions.ReadTimeout())
    fake.get(ACTIONS_URL, json={"value": []})

    with (
        make_client(clock, budget) as client,
        pytest.raises(ApiBudgetExhausted) as refused,
    ):
        client.submit_stop_and_quarantine(DEVICE, SHA1, "c")

    assert refused.value.route == SUBMIT
    assert [call.request.method for call in fake.calls] == ["POST", "GET"]


def test_budget_storage_fault_is_a_request_error_and_sends_nothing(
    clock: Clock, fake: responses.RequestsMock
) -> None:
    with (
        make_client(clock, BrokenStorageBudget()) as client,
        pytest.raises(ApiRequestError, match="nothing was sent") as raised,
    ):
        client.get_machine(DEVICE)

    assert isinstance(raised.value.__cause__, ServiceRequestError)
    assert "unreachable" not in str(raised.value)
    assert len(fake.calls) == 0


def test_hold_that_cannot_be_stored_still_raises_throttled(
    clock: Clock, fake: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    class SpendsButCannotHold(BrokenStorageBudget):
        def spend(self, route: str) -> None:
            pass

    fake.get(MACHINE_URL, **throttled("3"))

    with (
        caplog.at_level(logging.WARNING, logger="shared.defender_client"),
        make_client(clock, SpendsButCannotHold()) as client,
        pytest.raises(ApiThrottled),
    ):
        client.get_machine(DEVICE)

    (record,) = [r for r in caplog.records if r.msg == "defender.budget_hold_failed"]
    assert record.__dict__["route"] == MACHINE
    assert record.__dict__["error"] == "ServiceRequestError"


def test_from_settings_passes_the_budget_on(
    fake: responses.RequestsMock, budget: RecordingBudget
) -> None:
    settings = Settings.from_env(
        {"DEFENDER_API_URL": "http://127.0.0.1:8650", "DEFENDER_TOKEN": "local"}
    )
    fake.get(f"http://127.0.0.1:8650/api/machines/{DEVICE}", json={"id": DEVICE})

    with DefenderClient.from_settings(settings, budget=budget) as client:
        client.get_machine(DEVICE)

    assert budget.spent == [MACHINE]
