"""The Defender client spending a budget kept in Azurite, against the simulator.

The budget, the client and the simulator share the simulator's manual clock, so
a minute passes with one ``advance`` and nothing waits. A budget that works keeps
the simulator from ever answering 429.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.budget import WINDOW_MARGIN_SECONDS, TableBudget
from shared.credentials import StaticTokenProvider
from shared.defender_client import DefenderClient
from shared.errors import ApiBudgetExhausted, ApiThrottled
from simulator import RunningSimulator
from simulator.demo import DEVICE_WIN10, FILE_THIRD_PARTY

pytestmark = pytest.mark.integration

COMMENT = "Stop and quarantine file on machine due to alert da1_2"


def fail_on_sleep(seconds: float) -> None:
    raise AssertionError(f"the client slept {seconds} s with a shared budget")


@pytest.fixture(name="table_name")
def _table_name(storage_connection: str, storage_prefix: str) -> Iterator[str]:
    name = f"{storage_prefix}budget"
    with TableServiceClient.from_connection_string(storage_connection) as service:
        service.create_table(name)
        yield name


@pytest.fixture(name="make_client")
def _make_client(
    simulator: RunningSimulator,
    full_token: str,
    storage_connection: str,
    table_name: str,
) -> Iterator[Callable[[], DefenderClient]]:
    """Clients as separate instances would hold them, each with its own budget
    object on the one shared table."""
    opened: list[DefenderClient | TableClient] = []

    def simulated_now() -> datetime:
        return datetime.fromtimestamp(simulator.now(), UTC)

    def make() -> DefenderClient:
        table = TableClient.from_connection_string(storage_connection, table_name)
        client = DefenderClient(
            api_url=simulator.base_url,
            tokens=StaticTokenProvider(full_token),
            read_timeout=5.0,
            max_retries=3,
            clock=simulated_now,
            sleep=fail_on_sleep,
            jitter=lambda: 1.0,
            budget=TableBudget(table, clock=simulated_now),
        )
        opened.extend([table, client])
        return client

    yield make
    for resource in opened:
        resource.close()


def test_budget_keeps_the_simulator_from_ever_answering_429(
    make_client: Callable[[], DefenderClient], simulator: RunningSimulator
) -> None:
    clients = [make_client(), make_client()]
    fetched = 0
    refusals: list[ApiBudgetExhausted] = []

    for n in range(150):
        try:
            clients[n % 2].get_machine(DEVICE_WIN10)
        except ApiBudgetExhausted as refusal:
            refusals.append(refusal)
        else:
            fetched += 1

    assert fetched == 100
    assert len(refusals) == 50
    statuses = [entry.status for entry in simulator.request_log()]
    assert statuses == [200] * 100
    now = datetime.fromtimestamp(simulator.now(), UTC)
    margin = timedelta(seconds=60 + WINDOW_MARGIN_SECONDS)
    assert {refusal.retry_at for refusal in refusals} == {now + margin}
    assert {refusal.route for refusal in refusals} == {"machines/{id}"}


def test_budget_frees_again_once_the_minute_has_passed(
    make_client: Callable[[], DefenderClient], simulator: RunningSimulator
) -> None:
    client = make_client()
    for _ in range(100):
        client.get_machine(DEVICE_WIN10)
    with pytest.raises(ApiBudgetExhausted):
        client.get_machine(DEVICE_WIN10)

    simulator.advance(60 + WINDOW_MARGIN_SECONDS)
    client.get_machine(DEVICE_WIN10)

    assert 429 not in [entry.status for entry in simulator.request_log()]


def test_a_429_met_by_one_instance_holds_the_api_for_the_other(
    make_client: Callable[[], DefenderClient], simulator: RunningSimulator
) -> None:
    first, second = make_client(), make_client()
    simulator.set_faults(throttle_next=1, throttle_retry_after=2)
    before = datetime.fromtimestamp(simulator.now(), UTC)

    with pytest.raises(ApiThrottled) as throttled:
        first.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)
    with pytest.raises(ApiBudgetExhausted) as refused:
        second.submit_stop_and_quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT)

    assert throttled.value.retry_at == before + timedelta(seconds=2)
    assert refused.value.retry_at == throttled.value.retry_at
    assert [entry.status for entry in simulator.request_log()] == [429]

    simulator.advance(2)
    submission = second.submit_stop_and_quarantine(
        DEVICE_WIN10, FILE_THIRD_PARTY, COMMENT
    )

    assert submission.action is not None
    assert [entry.status for entry in simulator.request_log()] == [429, 201]
