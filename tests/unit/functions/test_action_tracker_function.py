"""The action tracker's timer function: its binding, and what one tick does.

The binding is read the way the host indexes it (a ``FunctionApp`` with the
blueprint registered). Ticks are run with real ``TimerRequest`` objects and a real
tracker on an in-memory ledger; Defender is a small fake here, the client against
the simulator is in tests/integration/shared/test_action_tracker.py.
"""

from __future__ import annotations

import inspect
import json
import logging
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.functions.timer import TimerRequest

from functions import action_tracker as function_module
from functions.action_tracker import bp, handle_tracker_tick
from shared.action_tracker import ActionTracker
from shared.backlog import MemoryBacklog
from shared.ledger import LedgerEntry, MemoryLedger
from shared.machine_actions import MachineAction, MachineActionStatus, MachineActionType

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DEVICE = "1" * 40
SHA1 = "a" * 40
ACTION_ID = "6f1a3c2e-0b7d-4e59-9a41-2d8c5b7e9f10"


class OneActionDefender:
    """Defender with one StopAndQuarantineFile action, already succeeded."""

    def __init__(self) -> None:
        self.calls = 0

    def list_machine_actions(
        self,
        *,
        action_type: MachineActionType | None = None,
        created_since: datetime | None = None,
        top: int = 100,
    ) -> tuple[MachineAction, ...]:
        self.calls += 1
        return (
            MachineAction(
                id=ACTION_ID,
                action_type="StopAndQuarantineFile",
                status=MachineActionStatus.SUCCEEDED,
                raw_status="Succeeded",
                machine_id=DEVICE,
                file_identifier=SHA1,
            ),
        )

    def get_machine_action(self, action_id: str) -> MachineAction:
        raise AssertionError("the list names the only action")


def submitted(ledger: MemoryLedger) -> MemoryLedger:
    claim = ledger.claim(
        device_id=DEVICE, sha1=SHA1, alert_id="da1_2", at=NOW, max_submissions=3
    )
    ledger.record_submission(
        claim, action_id=ACTION_ID, action_status="Pending", at=NOW
    )
    return ledger


def make_tracker(ledger: MemoryLedger) -> ActionTracker:
    return ActionTracker(ledger=ledger, api=OneActionDefender(), now=lambda: NOW)


def status_of(ledger: MemoryLedger) -> str | None:
    entry = ledger.find(DEVICE, SHA1)
    return entry.action_status if entry else None


def registered() -> Any:
    app = func.FunctionApp()
    app.register_functions(bp)
    (function,) = app.get_functions()
    return function


def test_action_tracker_is_a_timer_on_the_configured_schedule() -> None:
    function = registered()
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]

    assert function.get_function_name() == "action_tracker"
    (binding,) = bindings
    assert binding["type"] == "timerTrigger"
    assert binding["direction"] == "IN"
    assert binding["name"] == "timer"
    assert binding["schedule"] == "%ACTION_TRACKER_SCHEDULE%"
    assert binding["useMonitor"] is True
    assert binding["runOnStartup"] is False


def test_binding_name_matches_the_handler_parameter() -> None:
    """The worker refuses to index a function whose arg_name has no parameter."""
    function = registered()
    parameters = set(inspect.signature(function.get_user_function()).parameters)

    assert {json.loads(raw)["name"] for raw in function.get_raw_bindings()} == (
        parameters
    )


def test_tick_runs_the_tracker_and_returns_its_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = submitted(MemoryLedger())

    report = handle_tracker_tick(TimerRequest(), tracker=make_tracker(ledger))

    assert (report.open, report.finished, report.api_calls) == (1, 1, 1)
    assert status_of(ledger) == "Succeeded"
    assert not [r for r in caplog.records if r.msg == "tracker.past_due"]


def test_late_tick_warns_and_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    ledger = submitted(MemoryLedger())

    report = handle_tracker_tick(
        TimerRequest(past_due=True), tracker=make_tracker(ledger)
    )

    (warning,) = [r for r in caplog.records if r.msg == "tracker.past_due"]
    assert warning.levelno == logging.WARNING
    assert report.finished == 1
    assert status_of(ledger) == "Succeeded"


def test_registered_function_runs_the_tracker_of_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = submitted(MemoryLedger())
    tracker = make_tracker(ledger)
    backlog = MemoryBacklog()
    monkeypatch.setattr(function_module, "get_action_tracker", lambda: tracker)
    monkeypatch.setattr(function_module, "get_backlog", lambda: backlog)

    registered().get_user_function()(TimerRequest())

    assert status_of(ledger) == "Succeeded"


def test_a_tick_reports_the_backlog_depth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    backlog = MemoryBacklog()

    handle_tracker_tick(
        TimerRequest(), tracker=make_tracker(MemoryLedger()), backlog=backlog
    )

    (record,) = [r for r in caplog.records if r.msg == "backlog.depth"]
    assert record.messages == 0  # type: ignore[attr-defined]
    assert record.poisoned == 0  # type: ignore[attr-defined]


def test_storage_fault_escapes_the_tick() -> None:
    """The invocation fails visibly; the next tick tries again."""

    class UnreachableLedger(MemoryLedger):
        def entries(self, *, open_only: bool = False) -> list[LedgerEntry]:
            raise ServiceRequestError("the table service is unreachable")

    with pytest.raises(ServiceRequestError):
        handle_tracker_tick(TimerRequest(), tracker=make_tracker(UnreachableLedger()))
