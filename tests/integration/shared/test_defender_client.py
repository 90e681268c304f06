"""The Defender client against the local simulator over loopback.

The client's clock is the simulator's manual clock and its sleep advances that
clock, so every wait is asserted and none is waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.credentials import CredentialKind, StaticTokenProvider
from shared.defender_client import DefenderClient, InvalidIdentifierError
from shared.errors import ApiAuthError, ApiResponseError, ApiThrottled
from shared.machine_actions import (
    MachineActionStatus,
    MachineActionType,
    SubmissionOutcome,
)
from shared.settings import Settings
from simulator import DropMode, RunningSimulator, make_token
from simulator.demo import (
    ALERT_THIRD_PARTY,
    DEVICE_LINUX,
    DEVICE_WIN10,
    DEVICE_WIN10_AV_PASSIVE,
    FILE_NEVER_SEEN,
    FILE_THIRD_PARTY,
    FILE_UNSIGNED,
    UNKNOWN_SHA1,
)

pytestmark = pytest.mark.integration

COMMENT = "Stop and quarantine file on machine due to alert da1_2"
SUBMIT_PATH = f"/api/machines/{DEVICE_WIN10}/StopAndQuarantineFile"


class RenewingTokens:
    """Gives ``first`` until asked to renew, then ``renewed``."""

    def __init__(self, first: str, renewed: str) -> None:
        self._first = first
        self._renewed = renewed
        self.renewals = 0

    @property
    def kind(self) -> CredentialKind:
        return CredentialKind.CLIENT_SECRET

    def get_token(self, *, force_refresh: bool = False) -> str:
        self.renewals += force_refresh
        return self._renewed if self.renewals else self._first


@pytest.fixture(name="sleeps")
def _sleeps() -> list[float]:
    return []


@pytest.fixture(name="make_client")
def _make_client(
    simulator: RunningSimulator, full_token: str, sleeps: list[float]
) -> Iterator[Callable[..., DefenderClient]]:
    made: list[DefenderClient] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        simulator.advance(seconds)

    def make(**overrides: object) -> DefenderClient:
        arguments: dict[str, object] = {
            "api_url": simulator.base_url,
            "tokens": StaticTokenProvider(full_token),
            "read_timeout": 5.0,
            "max_retries": 3,
            "clock": lambda: datetime.fromtimestamp(simulator.now(), UTC),
            "sleep": sleep,
            "jitter": lambda: 1.0,
        }
        arguments.update(overrides)
        client = DefenderClient(**arguments)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(name="client")
def _client(make_client: Callable[..., DefenderClient]) -> DefenderClient:
    return make_client()


def submissions(simulator: RunningSimulator) -> list[str]:
    return [e.path for e in simulator.request_log() if e.method == "POST"]


def open_actions_for(client: DefenderClient, machine_id: str, sha1: str) -> list[str]:
    actions = client.list_machine_actions(
        machine_id=machine_id, action_type=MachineActionType.STOP_AND_QUARANTINE_FILE
    )
    return [a.id for a in actions if a.concerns_file(sha1)]


def test_submission_creates_an_action_that_reaches_a_final_status(
    client: DefenderClient, simulator: RunningSimulator
) -> None:
    submission = client.submit_stop_and_quarantine(
        DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT
    )

    assert submission.outcome is SubmissionOutcome.CREATED
    assert submission.action is not None
    assert submission.action.is_open
    assert submission.action.machine_id == DEVICE_WIN10
    assert submission.action.concerns_file(FILE_THIRD_PARTY)
    assert submission.action.requestor_comment == COMMENT

    simulator.advance(3600)
    followed = client.get_machine_action(submission.action.id)

    assert followed.is_final
    assert followed.status is MachineActionStatus.SUCCEEDED


def test_second_submission_is_already_in_progress_with_the_open_action(
    client: DefenderClient, simulator: RunningSimulator
) -> None:
    first = client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)

    second = client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)

    assert second.outcome is SubmissionOutcome.ALREADY_IN_PROGRESS
    assert first.action is not None and second.action is not None
    assert second.action.id == first.action.id
    assert len(open_actions_for(client, DEVICE_WIN10, FILE_THIRD_PARTY)) == 1


def test_machine_and_antivirus_report_become_device_facts(
    client: DefenderClient,
) -> None:
    machine = client.get_machine(DEVICE_WIN10_AV_PASSIVE)
    av_info = client.get_av_info(DEVICE_WIN10_AV_PASSIVE)

    facts = machine.to_device_facts(av_info)

    assert facts.device_id == DEVICE_WIN10_AV_PASSIVE
    assert facts.source == "api"
    assert facts.av_mode == "1"
    assert facts.onboarding_status == "Onboarded"
    assert facts.os_platform is not None
    assert facts.os_platform.startswith("Windows")
    assert facts.os_build is not None


def test_file_becomes_file_facts(client: DefenderClient) -> None:
    profile = client.get_file(FILE_THIRD_PARTY)

    facts = profile.to_file_facts()

    assert facts.sha1 == FILE_THIRD_PARTY
    assert facts.source == "api"
    assert facts.signer is not None
    assert facts.is_valid_certificate is True


def test_alert_comes_with_its_evidence(client: DefenderClient) -> None:
    alert = client.get_alert(ALERT_THIRD_PARTY)

    assert alert.id == ALERT_THIRD_PARTY
    evidence = alert.document["evidence"]
    assert any(item.get("sha1") == FILE_THIRD_PARTY for item in evidence)


def test_list_filters_by_machine_type_status_and_creation_time(
    client: DefenderClient, simulator: RunningSimulator
) -> None:
    client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)
    client.submit_stop_and_quarantine(DEVICE_WIN10_AV_PASSIVE, FILE_UNSIGNED, COMMENT)
    since = datetime.fromtimestamp(simulator.now(), UTC) - timedelta(minutes=1)

    actions = client.list_machine_actions(
        machine_id=DEVICE_WIN10,
        action_type=MachineActionType.STOP_AND_QUARANTINE_FILE,
        statuses=[MachineActionStatus.PENDING],
        created_since=since,
        top=10,
    )
    later = client.list_machine_actions(
        created_since=since + timedelta(hours=1), top=10
    )

    assert [(a.machine_id, a.file_identifier) for a in actions] == [
        (DEVICE_WIN10, FILE_THIRD_PARTY)
    ]
    assert later == ()


def test_cancel_moves_an_open_action_to_cancelled(client: DefenderClient) -> None:
    submission = client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_UNSIGNED, COMMENT)
    assert submission.action is not None

    cancelled = client.cancel_machine_action(submission.action.id, "false positive")

    assert cancelled.status is MachineActionStatus.CANCELLED
    assert cancelled.cancellation_comment == "false positive"


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.get_machine("0" * 40), 404, "ResourceNotFound"),
        (lambda c: c.get_file(UNKNOWN_SHA1), 404, "ResourceNotFound"),
        (
            lambda c: c.get_machine_action("00000000-0000-0000-0000-000000000000"),
            404,
            "ResourceNotFound",
        ),
        (
            lambda c: c.submit_stop_and_quarantine(DEVICE_LINUX, FILE_UNSIGNED, "c"),
            400,
            "OsPlatformNotSupported",
        ),
        (
            lambda c: c.submit_stop_and_quarantine(DEVICE_WIN10, FILE_NEVER_SEEN, "c"),
            404,
            "ResourceNotFound",
        ),
    ],
)
def test_defender_errors_carry_status_code_and_are_not_retried(
    client: DefenderClient,
    simulator: RunningSimulator,
    call: Callable[[DefenderClient], object],
    status: int,
    code: str,
) -> None:
    with pytest.raises(ApiResponseError) as raised:
        call(client)

    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message
    assert raised.value.correlation_id is not None
    assert len(simulator.request_log()) == 1


def test_missing_permission_is_an_auth_error_naming_it(
    make_client: Callable[..., DefenderClient], simulator: RunningSimulator
) -> None:
    token = make_token(["Machine.Read.All", "File.Read.All", "Alert.Read.All"])
    client = make_client(tokens=StaticTokenProvider(token))

    with pytest.raises(ApiAuthError) as raised:
        client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)

    assert raised.value.status == 403
    assert "Machine.StopAndQuarantine" in raised.value.message
    assert len(simulator.request_log()) == 1


def test_short_retry_after_is_waited_then_the_call_succeeds(
    client: DefenderClient, simulator: RunningSimulator, sleeps: list[float]
) -> None:
    simulator.set_faults(throttle_next=1, throttle_retry_after=2)

    machine = client.get_machine(DEVICE_WIN10)

    assert machine.id == DEVICE_WIN10
    assert sleeps == [2.0]
    assert [e.status for e in simulator.request_log()] == [429, 200]


def test_long_retry_after_defers_without_waiting(
    client: DefenderClient, simulator: RunningSimulator, sleeps: list[float]
) -> None:
    simulator.set_faults(throttle_next=1, throttle_retry_after=30)
    before = datetime.fromtimestamp(simulator.now(), UTC)

    with pytest.raises(ApiThrottled) as raised:
        client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)

    assert raised.value.retry_at == before + timedelta(seconds=30)
    assert sleeps == []
    assert len(simulator.request_log()) == 1
    assert open_actions_for(client, DEVICE_WIN10, FILE_THIRD_PARTY) == []


def test_rate_limit_of_a_hundred_a_minute_defers_the_next_call(
    make_client: Callable[..., DefenderClient], simulator: RunningSimulator
) -> None:
    client = make_client(max_wait_seconds=0.0)
    for _ in range(100):
        client.get_machine(DEVICE_WIN10)

    with pytest.raises(ApiThrottled) as raised:
        client.get_machine(DEVICE_WIN10)

    now = datetime.fromtimestamp(simulator.now(), UTC)
    assert now < raised.value.retry_at <= now + timedelta(minutes=1)


def test_burst_of_server_errors_is_retried_with_backoff(
    client: DefenderClient, simulator: RunningSimulator, sleeps: list[float]
) -> None:
    simulator.set_faults(error_next=2)

    profile = client.get_file(FILE_THIRD_PARTY)

    assert profile.sha1 == FILE_THIRD_PARTY
    assert sleeps == [0.5, 1.0]
    assert [e.status for e in simulator.request_log()] == [500, 500, 200]


def test_server_errors_past_the_retries_raise(
    client: DefenderClient, simulator: RunningSimulator, sleeps: list[float]
) -> None:
    simulator.set_faults(error_next=10)

    with pytest.raises(ApiResponseError) as raised:
        client.get_machine(DEVICE_WIN10)

    assert raised.value.status == 500
    assert raised.value.code == "InternalServerError"
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(simulator.request_log()) == 4


def test_answer_dropped_after_the_action_was_made_is_recovered_not_resent(
    client: DefenderClient, simulator: RunningSimulator
) -> None:
    simulator.set_faults(drop_next=1, drop_mode=DropMode.AFTER)

    submission = client.submit_stop_and_quarantine(
        DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT
    )

    assert submission.outcome is SubmissionOutcome.RECOVERED_AFTER_UNKNOWN
    assert submission.action is not None
    assert submissions(simulator) == [SUBMIT_PATH]
    assert open_actions_for(client, DEVICE_WIN10, FILE_THIRD_PARTY) == [
        submission.action.id
    ]


def test_connection_dropped_before_the_action_was_made_is_resent_once(
    client: DefenderClient, simulator: RunningSimulator
) -> None:
    simulator.set_faults(drop_next=1, drop_mode=DropMode.BEFORE)

    submission = client.submit_stop_and_quarantine(
        DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT
    )

    assert submission.outcome is SubmissionOutcome.CREATED
    assert submission.action is not None
    assert submissions(simulator) == [SUBMIT_PATH, SUBMIT_PATH]
    assert open_actions_for(client, DEVICE_WIN10, FILE_THIRD_PARTY) == [
        submission.action.id
    ]


def test_dropped_read_is_simply_retried(
    client: DefenderClient, simulator: RunningSimulator, sleeps: list[float]
) -> None:
    simulator.set_faults(drop_next=1, drop_mode=DropMode.AFTER)

    machine = client.get_machine(DEVICE_WIN10)

    assert machine.id == DEVICE_WIN10
    assert sleeps == [0.5]
    assert len(simulator.request_log()) == 2


def test_expired_token_is_renewed_once_then_the_call_succeeds(
    make_client: Callable[..., DefenderClient],
    simulator: RunningSimulator,
    full_token: str,
) -> None:
    expired = make_token(["Machine.Read.All"], expires_at=time.time() - 600)
    tokens = RenewingTokens(expired, full_token)
    client = make_client(tokens=tokens)

    machine = client.get_machine(DEVICE_WIN10)

    assert machine.id == DEVICE_WIN10
    assert tokens.renewals == 1
    assert [e.status for e in simulator.request_log()] == [401, 200]


def test_token_rejected_after_renewal_is_an_auth_error(
    make_client: Callable[..., DefenderClient], simulator: RunningSimulator
) -> None:
    client = make_client(tokens=StaticTokenProvider("not-a-token"))

    with pytest.raises(ApiAuthError) as raised:
        client.get_machine(DEVICE_WIN10)

    assert raised.value.status == 401
    assert [e.status for e in simulator.request_log()] == [401, 401]


def test_permission_check_of_a_full_token_is_complete(client: DefenderClient) -> None:
    report = client.check_permissions()

    assert report.decoded
    assert report.is_complete


def test_permission_check_names_what_a_partial_token_lacks(
    make_client: Callable[..., DefenderClient],
) -> None:
    token = make_token(["Machine.StopAndQuarantine", "Alert.Read.All"])
    client = make_client(tokens=StaticTokenProvider(token))

    report = client.check_permissions()

    assert report.missing == (
        "Machine.Read.All (or Machine.ReadWrite.All)",
        "File.Read.All",
    )


HOSTILE = [
    f"../machines/{DEVICE_WIN10}",
    f"{DEVICE_WIN10}/../../alerts",
    f"{DEVICE_WIN10}?$top=1",
    f"{DEVICE_WIN10}#fragment",
    f"{DEVICE_WIN10[:-3]}%2F",
    f"{DEVICE_WIN10[:-1]} ",
    f"{DEVICE_WIN10[:-1]}\u00e9",
    "00000000-0000-0000-0000-000000000000/cancel",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_identifier_never_reaches_the_api(
    client: DefenderClient, simulator: RunningSimulator, hostile: str
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.get_machine(hostile),
        lambda: client.get_file(hostile),
        lambda: client.get_av_info(hostile),
        lambda: client.submit_stop_and_quarantine(hostile, FILE_THIRD_PARTY, "c"),
        lambda: client.submit_stop_and_quarantine(DEVICE_WIN10, hostile, "c"),
        lambda: client.get_machine_action(hostile),
        lambda: client.cancel_machine_action(hostile, "c"),
        lambda: client.get_alert(hostile),
        lambda: client.list_machine_actions(machine_id=hostile),
    ]

    for call in calls:
        with pytest.raises(InvalidIdentifierError):
            call()

    assert simulator.request_log() == []


def test_hostile_filter_value_stays_inside_its_quotes(
    client: DefenderClient, simulator: RunningSimulator
) -> None:
    client.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)
    simulator.clear_log()

    actions = client.list_machine_actions(
        requestor=f"x' and machineId eq '{DEVICE_WIN10}&$top=1#"
    )

    assert actions == ()
    (entry,) = simulator.request_log()
    assert entry.path == "/api/machineactions"
    assert entry.status == 200
    assert set(entry.query) == {"$filter", "$top"}


def test_client_from_settings_reaches_the_simulator_with_a_fixed_token(
    simulator: RunningSimulator, full_token: str
) -> None:
    settings = Settings.from_env(
        {"DEFENDER_API_URL": simulator.base_url, "DEFENDER_TOKEN": full_token}
    )

    with DefenderClient.from_settings(settings) as client:
        machine = client.get_machine(DEVICE_WIN10)

    assert machine.id == DEVICE_WIN10
