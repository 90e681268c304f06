"""The shared API budget in Azure Table storage (Azurite), as several instances
use it at once: never more calls than a window allows, and one instance's hold
stops the others.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.budget import (
    WINDOW_MARGIN_SECONDS,
    BucketState,
    TableBudget,
    Window,
    budget_row_key,
)
from shared.errors import ApiBudgetExhausted

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
MARGIN = timedelta(seconds=WINDOW_MARGIN_SECONDS)
MACHINE = "machines/{id}"
SUBMIT = "machines/{id}/StopAndQuarantineFile"


class SharedClock:
    """One simulated time for every instance; moves only when told to."""

    def __init__(self) -> None:
        self._now = START
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


@pytest.fixture(name="clock")
def _clock() -> SharedClock:
    return SharedClock()


@pytest.fixture(name="table_name")
def _table_name(storage_connection: str, storage_prefix: str) -> Iterator[str]:
    name = f"{storage_prefix}budget"
    with TableServiceClient.from_connection_string(storage_connection) as service:
        service.create_table(name)
        yield name


@pytest.fixture(name="make_instance")
def _make_instance(
    storage_connection: str, table_name: str, clock: SharedClock
) -> Iterator[Callable[..., TableBudget]]:
    """Budgets as separate instances would hold them: each its own TableClient."""
    tables: list[TableClient] = []

    def make(**options: object) -> TableBudget:
        table = TableClient.from_connection_string(storage_connection, table_name)
        tables.append(table)
        options.setdefault("clock", clock)
        return TableBudget(table, **options)  # type: ignore[arg-type]

    yield make
    for table in tables:
        table.close()


def test_instances_spending_at_once_never_pass_the_limit(
    make_instance: Callable[..., TableBudget],
) -> None:
    instances = [make_instance(), make_instance()]
    granted: list[int] = []
    refused: list[ApiBudgetExhausted] = []
    lock = threading.Lock()

    def spend_many(budget: TableBudget, count: int) -> None:
        for _ in range(count):
            try:
                budget.spend(SUBMIT)
            except ApiBudgetExhausted as refusal:
                with lock:
                    refused.append(refusal)
            else:
                with lock:
                    granted.append(1)

    shares = [38] * 4 + [37] * 4  # 300 spends from 8 threads, 4 per instance
    threads = [
        threading.Thread(target=spend_many, args=(instances[n % 2], count))
        for n, count in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(granted) + len(refused) == 300
    assert len(granted) == 100
    (state,) = instances[1].snapshot()
    assert state.calls_last_minute == 100


def test_the_window_refuses_the_next_call_until_the_first_leaves(
    make_instance: Callable[..., TableBudget], clock: SharedClock
) -> None:
    first, second = make_instance(), make_instance()
    for n in range(100):
        (first if n % 2 else second).spend(MACHINE)
        clock.advance(0.25)

    with pytest.raises(ApiBudgetExhausted) as refused:
        first.spend(MACHINE)

    assert refused.value.retry_at == START + timedelta(seconds=60) + MARGIN
    clock.advance((refused.value.retry_at - clock()).total_seconds())
    second.spend(MACHINE)
    with pytest.raises(ApiBudgetExhausted):
        first.spend(MACHINE)


def test_a_hold_written_by_one_instance_stops_the_other(
    make_instance: Callable[..., TableBudget], clock: SharedClock
) -> None:
    first, second = make_instance(), make_instance()
    first.spend(SUBMIT)
    until = START + timedelta(seconds=42, microseconds=123_456)

    first.hold(SUBMIT, until)

    with pytest.raises(ApiBudgetExhausted) as refused:
        second.spend(SUBMIT)
    assert refused.value.retry_at == until
    second.spend(MACHINE)

    clock.advance((until - START).total_seconds())
    second.spend(SUBMIT)


def test_a_hold_keeps_the_later_time_across_instances(
    make_instance: Callable[..., TableBudget], clock: SharedClock
) -> None:
    first, second = make_instance(), make_instance()

    first.hold(SUBMIT, START + timedelta(seconds=90))
    second.hold(SUBMIT, START + timedelta(seconds=30))
    clock.advance(60)

    with pytest.raises(ApiBudgetExhausted) as refused:
        second.spend(SUBMIT)
    assert refused.value.retry_at == START + timedelta(seconds=90)


def test_a_hold_keeps_the_calls_already_counted(
    make_instance: Callable[..., TableBudget], clock: SharedClock
) -> None:
    budget = make_instance(windows=lambda route: (Window(60, 3),))
    for _ in range(3):
        budget.spend(SUBMIT)

    budget.hold(SUBMIT, START + timedelta(seconds=5))
    clock.advance(5)

    with pytest.raises(ApiBudgetExhausted) as refused:
        budget.spend(SUBMIT)
    assert refused.value.retry_at == START + timedelta(seconds=60) + MARGIN


def test_share_and_deviceavinfo_limits_hold_in_the_table(
    make_instance: Callable[..., TableBudget],
) -> None:
    budget = make_instance(share=0.5)

    granted = 0
    for _ in range(40):
        try:
            budget.spend("deviceavinfo")
        except ApiBudgetExhausted:
            break
        granted += 1

    assert granted == 15


def test_snapshot_reads_every_api_from_the_table(
    make_instance: Callable[..., TableBudget], clock: SharedClock
) -> None:
    first, second = make_instance(), make_instance()
    first.spend(SUBMIT)
    clock.advance(90)
    second.spend(SUBMIT)
    second.spend(MACHINE)
    first.hold(MACHINE, clock() + timedelta(seconds=10))

    assert make_instance().snapshot() == [
        BucketState(
            route=MACHINE,
            calls_last_minute=1,
            calls_last_hour=1,
            limits=(Window(60, 100), Window(3600, 1500)),
            not_before=clock() + timedelta(seconds=10),
        ),
        BucketState(
            route=SUBMIT,
            calls_last_minute=1,
            calls_last_hour=2,
            limits=(Window(60, 100), Window(3600, 1500)),
            not_before=None,
        ),
    ]


def test_entity_is_keyed_by_a_table_safe_route_and_keeps_a_compact_log(
    make_instance: Callable[..., TableBudget],
    storage_connection: str,
    table_name: str,
    clock: SharedClock,
) -> None:
    budget = make_instance()
    for _ in range(100):
        budget.spend(SUBMIT)
        clock.advance(0.001)

    with TableClient.from_connection_string(storage_connection, table_name) as table:
        entity = table.get_entity("budget", budget_row_key(SUBMIT))

    assert entity["Route"] == SUBMIT
    log = json.loads(entity["Calls"])
    assert log[0] == int(START.timestamp() * 1000)
    assert log[1:] == [1] * 99
    assert "NotBefore" not in entity


def test_a_spend_that_keeps_losing_the_write_defers_by_a_second(
    make_instance: Callable[..., TableBudget],
    clock: SharedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rival = make_instance()
    rival_calls = 0

    def rival_writes_in_between() -> datetime:
        # The budget reads its clock between reading the entity and writing it.
        nonlocal rival_calls
        rival.spend(SUBMIT)
        rival_calls += 1
        return clock()

    budget = make_instance(
        clock=rival_writes_in_between, attempts=3, pause=lambda seconds: None
    )

    with (
        caplog.at_level(logging.WARNING, logger="shared.budget"),
        pytest.raises(ApiBudgetExhausted) as refused,
    ):
        budget.spend(SUBMIT)

    assert refused.value.retry_at == START + timedelta(seconds=1)
    assert [r.msg for r in caplog.records] == ["budget.contention"]
    (state,) = rival.snapshot()
    assert state.calls_last_minute == rival_calls
