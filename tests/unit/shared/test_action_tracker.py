"""The action tracker against an in-memory ledger and a fake Defender.

The fake answers from a table of machine actions and records every call, so each
test can say how many calls a run spent; the real client against the simulator is
in tests/integration/shared/test_action_tracker.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import telemetry
from shared.action_tracker import (
    DELIVERY_TIMEOUT,
    TIMEOUT_GRACE,
    ActionTracker,
    TrackerReport,
)
from shared.errors import ApiError, ApiResponseError, ApiThrottled
from shared.ledger import LedgerEntry, MemoryLedger
from shared.machine_actions import MachineAction, MachineActionStatus, MachineActionType
from shared.telemetry import Instruments

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SHA1 = "a" * 40
EXPIRY = DELIVERY_TIMEOUT + TIMEOUT_GRACE


def device(number: int) -> str:
    return f"{number:040x}"


def action_id(number: int) -> str:
    return str(uuid.UUID(int=number))


def action(
    number: int,
    status: MachineActionStatus,
    *,
    raw_status: str | None = None,
    last_updated: datetime | None = None,
    error_hresult: int | None = None,
) -> MachineAction:
    return MachineAction(
        id=action_id(number),
        action_type="StopAndQuarantineFile",
        status=status,
        raw_status=raw_status or str(status),
        machine_id=device(number),
        file_identifier=SHA1,
        created=NOW - timedelta(hours=1),
        last_updated=last_updated,
        error_hresult=error_hresult,
    )


class FakeDefender:
    """Knows some machine actions; lists those in ``listed`` (all by default)."""

    def __init__(
        self,
        actions: Iterable[MachineAction] = (),
        *,
        listed: Iterable[int] | None = None,
    ) -> None:
        self.actions = {a.id: a for a in actions}
        self.listed = (
            set(self.actions) if listed is None else {action_id(n) for n in listed}
        )
        self.list_calls: list[dict[str, Any]] = []
        self.lookups: list[str] = []
        self.list_error: ApiError | None = None
        self.lookup_errors: dict[str, ApiError] = {}

    def list_machine_actions(
        self,
        *,
        action_type: MachineActionType | None = None,
        created_since: datetime | None = None,
        top: int = 100,
    ) -> tuple[MachineAction, ...]:
        self.list_calls.append(
            {"action_type": action_type, "created_since": created_since, "top": top}
        )
        if self.list_error is not None:
            raise self.list_error
        return tuple(a for a in self.actions.values() if a.id in self.listed)

    def get_machine_action(self, action_id: str) -> MachineAction:
        self.lookups.append(action_id)
        if action_id in self.lookup_errors:
            raise self.lookup_errors[action_id]
        return self.actions[action_id]

    @property
    def calls(self) -> int:
        return len(self.list_calls) + len(self.lookups)


def submit(
    ledger: MemoryLedger,
    number: int,
    *,
    status: str = "Pending",
    at: datetime = NOW - timedelta(minutes=30),
    identifier: str | None = None,
) -> None:
    """Record a submission of target ``number`` the way the pipeline does."""
    claim = ledger.claim(
        device_id=device(number),
        sha1=SHA1,
        alert_id=f"da{number}_1",
        at=at,
        max_submissions=3,
    )
    assert claim.granted
    ledger.record_submission(
        claim,
        action_id=identifier or action_id(number),
        action_status=status,
        at=at,
    )


def entry(ledger: MemoryLedger, number: int) -> LedgerEntry:
    found = ledger.find(device(number), SHA1)
    assert found is not None
    return found


def status_of(ledger: MemoryLedger, number: int) -> str | None:
    return entry(ledger, number).action_status


def tracker(
    ledger: MemoryLedger, api: FakeDefender, *, max_single_lookups: int = 20
) -> ActionTracker:
    return ActionTracker(
        ledger=ledger,
        api=api,
        now=lambda: NOW,
        max_single_lookups=max_single_lookups,
    )


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.msg == event]


@pytest.fixture(name="ledger")
def _ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture(name="reader")
def _reader(monkeypatch: pytest.MonkeyPatch) -> InMemoryMetricReader:
    """The telemetry instruments, moved onto an in-memory meter for one test."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter(telemetry.METER_NAME)
    monkeypatch.setattr(telemetry, "_instruments", Instruments(meter))
    return reader


def outcome_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    counts: dict[str, int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "quarantine.machine_action_outcomes":
                    continue
                for point in metric.data.data_points:
                    status = str(dict(point.attributes or {})["status"])
                    counts[status] = int(point.value)
    return counts


def test_run_without_open_actions_calls_nothing(ledger: MemoryLedger) -> None:
    submit(ledger, 1, status="Succeeded")
    api = FakeDefender([action(1, MachineActionStatus.SUCCEEDED)])

    report = tracker(ledger, api).run()

    assert api.calls == 0
    assert report == TrackerReport(
        open=0, checked=0, finished=0, timed_out=0, still_open=0, api_calls=0
    )


def test_one_list_call_follows_every_open_action(ledger: MemoryLedger) -> None:
    for number in range(1, 31):
        submit(ledger, number, at=NOW - timedelta(minutes=number))
    api = FakeDefender(action(n, MachineActionStatus.SUCCEEDED) for n in range(1, 31))

    report = tracker(ledger, api).run()

    assert api.lookups == []
    (call,) = api.list_calls
    assert call["action_type"] is MachineActionType.STOP_AND_QUARANTINE_FILE
    assert call["top"] == 10_000
    oldest = NOW - timedelta(minutes=30)
    assert oldest - timedelta(minutes=30) < call["created_since"] < oldest
    assert report.finished == 30
    assert report.api_calls == 1
    assert {status_of(ledger, n) for n in range(1, 31)} == {"Succeeded"}


def test_changed_statuses_are_recorded_and_unchanged_ones_left(
    ledger: MemoryLedger,
) -> None:
    for number in range(1, 6):
        submit(ledger, number)
    api = FakeDefender(
        [
            action(1, MachineActionStatus.IN_PROGRESS),
            action(2, MachineActionStatus.SUCCEEDED),
            action(3, MachineActionStatus.FAILED, error_hresult=-2147024846),
            action(4, MachineActionStatus.CANCELLED, raw_status="Canceled"),
            action(5, MachineActionStatus.PENDING),
        ]
    )
    before = entry(ledger, 5).action_updated_at

    report = tracker(ledger, api).run()

    assert [status_of(ledger, n) for n in range(1, 6)] == [
        "InProgress",
        "Succeeded",
        "Failed",
        "Cancelled",
        "Pending",
    ]
    assert entry(ledger, 1).action_updated_at == NOW
    assert entry(ledger, 5).action_updated_at == before
    assert (report.checked, report.finished, report.still_open) == (5, 3, 2)


def test_action_the_list_missed_is_looked_up_alone(ledger: MemoryLedger) -> None:
    submit(ledger, 1)
    submit(ledger, 2)
    api = FakeDefender(
        [
            action(1, MachineActionStatus.SUCCEEDED),
            action(2, MachineActionStatus.FAILED),
        ],
        listed=[1],
    )

    report = tracker(ledger, api).run()

    assert api.lookups == [action_id(2)]
    assert status_of(ledger, 2) == "Failed"
    assert (report.api_calls, report.finished, report.lookups_deferred) == (2, 2, 0)


def test_single_lookups_are_capped_and_the_rest_wait(ledger: MemoryLedger) -> None:
    for number in range(1, 6):
        submit(ledger, number, at=NOW - timedelta(minutes=10 * number))
    api = FakeDefender(
        (action(n, MachineActionStatus.SUCCEEDED) for n in range(1, 6)), listed=[]
    )

    report = tracker(ledger, api, max_single_lookups=2).run()

    assert api.lookups == [action_id(5), action_id(4)], "oldest submissions first"
    assert report.lookups_deferred == 3
    assert report.still_open == 3
    assert report.incomplete is None
    assert [status_of(ledger, n) for n in range(1, 4)] == ["Pending"] * 3

    tracker(ledger, api, max_single_lookups=2).run()

    assert api.lookups[2:] == [action_id(3), action_id(2)]


def test_action_open_past_the_timeout_is_closed_by_the_tracker(
    ledger: MemoryLedger,
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shared.action_tracker")
    submit(ledger, 1, at=NOW - EXPIRY)
    api = FakeDefender([action(1, MachineActionStatus.PENDING)])

    report = tracker(ledger, api).run()

    assert status_of(ledger, 1) == "TimeOut"
    assert (report.timed_out, report.finished, report.still_open) == (1, 0, 0)
    (record,) = records(caplog, "action.final")
    assert record.closed_by == "tracker"
    assert record.minutes_from_submission == EXPIRY.total_seconds() / 60
    assert outcome_counts(reader) == {"TimeOut": 1}


def test_action_the_list_missed_past_the_timeout_is_closed_without_a_call(
    ledger: MemoryLedger,
) -> None:
    submit(ledger, 1, at=NOW - EXPIRY - timedelta(hours=5))
    api = FakeDefender([action(1, MachineActionStatus.SUCCEEDED)], listed=[])

    report = tracker(ledger, api).run()

    assert api.lookups == []
    assert status_of(ledger, 1) == "TimeOut"
    assert report.timed_out == 1


def test_action_within_the_grace_hour_stays_open(ledger: MemoryLedger) -> None:
    submit(ledger, 1, at=NOW - EXPIRY + timedelta(minutes=1))
    api = FakeDefender([action(1, MachineActionStatus.PENDING)])

    report = tracker(ledger, api).run()

    assert status_of(ledger, 1) == "Pending"
    assert (report.timed_out, report.still_open) == (0, 1)


def test_final_status_from_the_api_wins_over_the_timeout(
    ledger: MemoryLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.action_tracker")
    submit(ledger, 1, at=NOW - EXPIRY - timedelta(days=1))
    api = FakeDefender([action(1, MachineActionStatus.SUCCEEDED)])

    report = tracker(ledger, api).run()

    assert status_of(ledger, 1) == "Succeeded"
    assert (report.finished, report.timed_out) == (1, 0)
    (record,) = records(caplog, "action.final")
    assert record.closed_by == "defender"


def test_list_failure_ends_the_run_and_changes_nothing(
    ledger: MemoryLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.action_tracker")
    submit(ledger, 1)
    submit(ledger, 2, at=NOW - EXPIRY - timedelta(hours=1))
    api = FakeDefender([action(1, MachineActionStatus.SUCCEEDED)])
    api.list_error = ApiThrottled(
        retry_at=NOW + timedelta(minutes=1),
        code="TooManyRequests",
        message="Rate limit is exceeded.",
        correlation_id=None,
        method="GET",
        route="machineactions",
    )

    report = tracker(ledger, api).run()

    assert report.incomplete is not None
    assert "ApiThrottled" in report.incomplete
    assert api.lookups == []
    assert [status_of(ledger, n) for n in (1, 2)] == ["Pending", "Pending"]
    assert (report.api_calls, report.still_open) == (1, 2)
    (summary,) = records(caplog, "tracker.run")
    assert summary.levelno == logging.WARNING
    assert summary.incomplete == report.incomplete


def test_lookup_failure_keeps_what_was_learnt_and_leaves_the_rest(
    ledger: MemoryLedger,
) -> None:
    for number in (1, 2, 3):
        submit(ledger, number, at=NOW - timedelta(minutes=number))
    api = FakeDefender(
        (action(n, MachineActionStatus.SUCCEEDED) for n in (1, 2, 3)), listed=[1]
    )
    api.lookup_errors[action_id(3)] = ApiResponseError(
        status=503,
        code="ServiceUnavailable",
        message="Try again later.",
        correlation_id=None,
        method="GET",
        route="machineactions/{id}",
    )

    report = tracker(ledger, api).run()

    assert api.lookups == [action_id(3)], "the run stops at the first fault"
    assert [status_of(ledger, n) for n in (1, 2, 3)] == [
        "Succeeded",
        "Pending",
        "Pending",
    ]
    assert report.incomplete is not None
    assert action_id(3) in report.incomplete
    assert (report.api_calls, report.finished, report.still_open) == (2, 1, 2)


def test_action_already_final_in_the_ledger_is_not_touched(
    ledger: MemoryLedger,
) -> None:
    submit(ledger, 1, status="Succeeded")
    submit(ledger, 2)
    api = FakeDefender(
        [action(1, MachineActionStatus.FAILED), action(2, MachineActionStatus.FAILED)]
    )
    before = entry(ledger, 1)

    report = tracker(ledger, api).run()

    assert entry(ledger, 1) == before
    assert status_of(ledger, 2) == "Failed"
    assert (report.open, report.checked) == (1, 1)


def test_status_the_code_does_not_know_keeps_the_action_open(
    ledger: MemoryLedger, caplog: pytest.LogCaptureFixture
) -> None:
    submit(ledger, 1)
    api = FakeDefender(
        [action(1, MachineActionStatus.UNKNOWN, raw_status="AwaitingApproval")]
    )

    report = tracker(ledger, api).run()

    assert status_of(ledger, 1) == "Pending"
    assert report.still_open == 1
    (warning,) = records(caplog, "tracker.status_unknown")
    assert warning.raw_status == "AwaitingApproval"


def test_each_final_action_is_logged_and_counted_once(
    ledger: MemoryLedger,
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shared.action_tracker")
    submit(ledger, 1, at=NOW - timedelta(minutes=40))
    submit(ledger, 2, at=NOW - timedelta(minutes=40))
    submit(ledger, 3)
    api = FakeDefender(
        [
            action(
                1,
                MachineActionStatus.SUCCEEDED,
                last_updated=NOW - timedelta(minutes=25),
            ),
            action(2, MachineActionStatus.FAILED, error_hresult=-2147023838),
            action(3, MachineActionStatus.IN_PROGRESS),
        ]
    )

    tracker(ledger, api).run()
    tracker(ledger, api).run()

    finals = {r.action_id: r for r in records(caplog, "action.final")}
    assert sorted(finals) == [action_id(1), action_id(2)]
    succeeded = finals[action_id(1)]
    assert succeeded.device_id == device(1)
    assert succeeded.sha1 == SHA1
    assert succeeded.status == "Succeeded"
    assert succeeded.minutes_from_submission == 15.0
    assert finals[action_id(2)].error_hresult == -2147023838
    assert outcome_counts(reader) == {"Succeeded": 1, "Failed": 1}


def test_each_run_ends_with_one_summary_record(
    ledger: MemoryLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.action_tracker")
    submit(ledger, 1)
    submit(ledger, 2, at=NOW - EXPIRY)
    submit(ledger, 3)
    api = FakeDefender(
        [
            action(1, MachineActionStatus.SUCCEEDED),
            action(3, MachineActionStatus.PENDING),
        ]
    )

    report = tracker(ledger, api).run()

    (summary,) = records(caplog, "tracker.run")
    assert summary.levelno == logging.INFO
    fields = {key: getattr(summary, key) for key in report.to_json()}
    assert fields == {
        "open": 3,
        "checked": 2,
        "finished": 1,
        "timed_out": 1,
        "still_open": 1,
        "api_calls": 1,
        "lookups_deferred": 0,
        "incomplete": None,
    }


def test_storage_fault_is_raised(ledger: MemoryLedger) -> None:
    class FailingLedger(MemoryLedger):
        def record_action_status(self, **fields: Any) -> LedgerEntry | None:
            raise ServiceRequestError("the table service is unreachable")

    failing = FailingLedger()
    submit(failing, 1)
    api = FakeDefender([action(1, MachineActionStatus.SUCCEEDED)])

    with pytest.raises(ServiceRequestError):
        tracker(failing, api).run()


def test_action_id_that_is_no_guid_is_never_sent(
    ledger: MemoryLedger, caplog: pytest.LogCaptureFixture
) -> None:
    submit(ledger, 1, identifier="123")
    api = FakeDefender(listed=[])

    report = tracker(ledger, api).run()

    assert api.lookups == []
    assert report.still_open == 1
    assert records(caplog, "tracker.action_id_invalid")


def test_ids_match_in_any_letter_case(ledger: MemoryLedger) -> None:
    mixed = "0000000A-0000-0000-0000-00000000000b"
    submit(ledger, 1, identifier=mixed)
    listed = MachineAction(
        id=mixed.upper(),
        action_type="StopAndQuarantineFile",
        status=MachineActionStatus.SUCCEEDED,
        raw_status="Succeeded",
        machine_id=device(1),
    )
    api = FakeDefender([listed])

    tracker(ledger, api).run()

    assert api.lookups == []
    assert entry(ledger, 1).action_status == "Succeeded"
    assert entry(ledger, 1).action_id == mixed, "recorded under the ledger's spelling"


def test_report_reads_as_json() -> None:
    report = TrackerReport(
        open=4,
        checked=3,
        finished=2,
        timed_out=1,
        still_open=1,
        api_calls=2,
        lookups_deferred=0,
        incomplete="listing machine actions failed",
    )

    assert report.to_json() == {
        "open": 4,
        "checked": 3,
        "finished": 2,
        "timed_out": 1,
        "still_open": 1,
        "api_calls": 2,
        "lookups_deferred": 0,
        "incomplete": "listing machine actions failed",
    }


def test_negative_lookup_cap_is_refused(ledger: MemoryLedger) -> None:
    with pytest.raises(ValueError, match="max_single_lookups"):
        tracker(ledger, FakeDefender(), max_single_lookups=-1)
