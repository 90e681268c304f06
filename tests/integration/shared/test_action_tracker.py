"""The action tracker with the real Defender client against the simulator.

Targets are submitted through the client and recorded in a ``MemoryLedger`` as the
pipeline records them (claim, then the submission). The simulator, the client and
the tracker share the simulator's manual clock, as Defender's clock and ours agree:
moving it moves every action (picked up after 5 s, settled after 30 s, TimeOut after
3 days for a device that stays offline) and nothing waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.action_tracker import ActionTracker, TrackerReport
from shared.credentials import StaticTokenProvider
from shared.defender_client import DefenderClient
from shared.ledger import MemoryLedger
from shared.machine_actions import SubmissionOutcome
from simulator import RunningSimulator
from simulator.demo import (
    DEVICE_INACTIVE,
    DEVICE_SERVER_2019,
    DEVICE_WIN10,
    DEVICE_WIN10_AV_DISABLED,
    DEVICE_WIN11,
    FILE_THIRD_PARTY,
    FILE_UNSIGNED,
)

pytestmark = pytest.mark.integration

COMMENT = "Stop and quarantine file on machine due to alert da1_2"
LIST_PATH = "/api/machineactions"

# Each target, and the final status the simulator gives its action.
TARGETS = {
    (DEVICE_WIN10, FILE_UNSIGNED): "Succeeded",
    (DEVICE_WIN11, FILE_UNSIGNED): "Succeeded",
    (DEVICE_SERVER_2019, FILE_THIRD_PARTY): "Failed",
    (DEVICE_WIN10_AV_DISABLED, FILE_UNSIGNED): "Failed",
    (DEVICE_INACTIVE, FILE_UNSIGNED): "TimeOut",
}


@pytest.fixture(name="now")
def _now(simulator: RunningSimulator) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(simulator.now(), UTC)


@pytest.fixture(name="client")
def _client(
    simulator: RunningSimulator, full_token: str, now: Callable[[], datetime]
) -> Iterator[DefenderClient]:
    client = DefenderClient(
        api_url=simulator.base_url,
        tokens=StaticTokenProvider(full_token),
        read_timeout=5.0,
        max_retries=2,
        clock=now,
        sleep=simulator.advance,
        jitter=lambda: 1.0,
    )
    with client:
        yield client


@pytest.fixture(name="ledger")
def _ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture(name="tracker")
def _tracker(
    ledger: MemoryLedger, client: DefenderClient, now: Callable[[], datetime]
) -> ActionTracker:
    return ActionTracker(ledger=ledger, api=client, now=now)


def submit(
    client: DefenderClient,
    ledger: MemoryLedger,
    now: Callable[[], datetime],
    device_id: str,
    sha1: str,
) -> SubmissionOutcome:
    """Claim, submit through the client and record the answer, as the pipeline does."""
    claim = ledger.claim(
        device_id=device_id, sha1=sha1, alert_id="da1_2", at=now(), max_submissions=3
    )
    assert claim.granted, claim.refusal
    submission = client.submit_stop_and_quarantine(device_id, sha1, COMMENT)
    assert submission.action is not None
    ledger.record_submission(
        claim,
        action_id=submission.action.id,
        action_status=submission.action.raw_status,
        at=now(),
    )
    return submission.outcome


def statuses(ledger: MemoryLedger) -> dict[tuple[str, str], str | None]:
    return {(e.device_id, e.sha1): e.action_status for e in ledger.entries()}


def calls(simulator: RunningSimulator) -> list[tuple[str, str]]:
    """The tracker's calls since the log was cleared: ("list", "") or ("get", id)."""
    made = []
    for request in simulator.request_log():
        assert request.method == "GET", request
        if request.path == LIST_PATH:
            made.append(("list", ""))
        else:
            made.append(("get", request.path.removeprefix(LIST_PATH + "/")))
    return made


def run(tracker: ActionTracker, simulator: RunningSimulator) -> TrackerReport:
    simulator.clear_log()
    return tracker.run()


def test_every_action_reaches_its_final_status_with_one_list_call_per_run(
    client: DefenderClient,
    ledger: MemoryLedger,
    tracker: ActionTracker,
    simulator: RunningSimulator,
    now: Callable[[], datetime],
) -> None:
    for device_id, sha1 in TARGETS:
        submit(client, ledger, now, device_id, sha1)
        simulator.advance(1)

    simulator.advance(10)
    first = run(tracker, simulator)

    assert calls(simulator) == [("list", "")]
    (listing,) = simulator.request_log()
    assert listing.query["$top"] == "10000"
    assert listing.query["$filter"].startswith(
        "type eq 'StopAndQuarantineFile' and creationDateTimeUtc ge "
    )
    assert (first.open, first.checked, first.finished) == (5, 5, 0)
    assert set(statuses(ledger).values()) == {"InProgress", "Pending"}

    simulator.advance(60)
    second = run(tracker, simulator)

    assert calls(simulator) == [("list", "")]
    assert (second.open, second.finished, second.still_open) == (5, 4, 1)

    simulator.advance(timedelta(days=3).total_seconds())
    third = run(tracker, simulator)

    assert calls(simulator) == [("list", "")]
    assert (third.open, third.finished, third.timed_out) == (1, 1, 0)
    assert statuses(ledger) == TARGETS

    fourth = run(tracker, simulator)

    assert calls(simulator) == [], "nothing open, nothing asked"
    assert fourth.open == 0


def test_action_created_before_its_recorded_submission_is_looked_up(
    client: DefenderClient,
    ledger: MemoryLedger,
    tracker: ActionTracker,
    simulator: RunningSimulator,
    now: Callable[[], datetime],
) -> None:
    """An action found "already in progress" predates the list's window."""
    created_elsewhere = client.submit_stop_and_quarantine(
        DEVICE_INACTIVE, FILE_UNSIGNED, COMMENT
    )
    assert created_elsewhere.action is not None
    simulator.advance(timedelta(hours=2).total_seconds())
    submit(client, ledger, now, DEVICE_WIN10, FILE_UNSIGNED)

    outcome = submit(client, ledger, now, DEVICE_INACTIVE, FILE_UNSIGNED)
    simulator.set_device_health(DEVICE_INACTIVE, "Active")
    simulator.advance(60)
    report = run(tracker, simulator)

    assert outcome is SubmissionOutcome.ALREADY_IN_PROGRESS
    assert calls(simulator) == [("list", ""), ("get", created_elsewhere.action.id)]
    assert set(statuses(ledger).values()) == {"Succeeded"}
    assert (report.api_calls, report.finished, report.still_open) == (2, 2, 0)


def test_throttled_list_ends_the_run_and_the_next_one_resumes(
    client: DefenderClient,
    ledger: MemoryLedger,
    tracker: ActionTracker,
    simulator: RunningSimulator,
    now: Callable[[], datetime],
) -> None:
    submit(client, ledger, now, DEVICE_WIN10, FILE_UNSIGNED)
    simulator.advance(60)
    # A Retry-After longer than the client waits: it gives up at once.
    simulator.set_faults(throttle_next=1, throttle_retry_after=120)

    throttled = run(tracker, simulator)

    assert throttled.incomplete is not None
    assert "ApiThrottled" in throttled.incomplete
    assert calls(simulator) == [("list", "")]
    assert statuses(ledger) == {(DEVICE_WIN10, FILE_UNSIGNED): "Pending"}

    simulator.advance(120)
    resumed = run(tracker, simulator)

    assert resumed.incomplete is None
    assert statuses(ledger) == {(DEVICE_WIN10, FILE_UNSIGNED): "Succeeded"}
