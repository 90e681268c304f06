"""Faults on demand: server errors, 429 storms, dropped connections, latency."""

from __future__ import annotations

import pytest
import requests

from simulator import (
    DropMode,
    FaultKind,
    Faults,
    ManualClock,
    RunningSimulator,
    start_simulator,
)
from simulator.demo import DEVICE_WIN10, FILE_UNSIGNED
from simulator.faults import FaultsError
from tests.integration.simulator.client import Api, error_code

pytestmark = pytest.mark.integration


def _actions(api: Api) -> list[str]:
    return [action["id"] for action in api.get("machineactions").json()["value"]]


def test_error_next_answers_500_that_many_times_then_serves(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(error_next=2)

    statuses = [api.quarantine(DEVICE_WIN10, FILE_UNSIGNED) for _ in range(3)]

    assert [r.status_code for r in statuses] == [500, 500, 201]
    assert error_code(statuses[0]) == "InternalServerError"
    assert _actions(api) == [statuses[2].json()["id"]]
    assert [e.fault for e in simulator.request_log()[:3]] == [
        FaultKind.ERROR,
        FaultKind.ERROR,
        FaultKind.NONE,
    ]


def test_throttle_next_answers_429_with_the_chosen_retry_after(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(throttle_next=3, throttle_retry_after=7)

    storm = [api.get(f"machines/{DEVICE_WIN10}") for _ in range(3)]
    after = api.get(f"machines/{DEVICE_WIN10}")

    assert [r.status_code for r in storm] == [429, 429, 429]
    assert {r.headers["Retry-After"] for r in storm} == {"7"}
    assert error_code(storm[0]) == "TooManyRequests"
    assert after.status_code == 200


def test_throttle_without_retry_after_omits_the_header(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(throttle_next=1, throttle_retry_after=0)

    response = api.get(f"machines/{DEVICE_WIN10}")

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_drop_before_loses_the_call_and_nothing_happens(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(drop_next=1, drop_mode=DropMode.BEFORE)

    with pytest.raises(requests.ConnectionError):
        api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)
    retry = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert retry.status_code == 201
    assert _actions(api) == [retry.json()["id"]]
    dropped = simulator.request_log()[0]
    assert dropped.status is None
    assert dropped.fault is FaultKind.DROP_BEFORE


def test_drop_after_loses_the_answer_but_the_action_exists(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(drop_next=1, drop_mode=DropMode.AFTER)

    with pytest.raises(requests.ConnectionError):
        api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)
    retry = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    [action_id] = _actions(api)
    assert retry.status_code == 400
    assert error_code(retry) == "ActiveRequestAlreadyExists"
    lost = simulator.request_log()[0]
    assert lost.status == 201
    assert lost.action_id == action_id
    assert lost.fault is FaultKind.DROP_AFTER


def test_error_rate_one_fails_every_call(api: Api, simulator: RunningSimulator) -> None:
    simulator.set_faults(error_rate=1.0)

    statuses = {api.get(f"machines/{DEVICE_WIN10}").status_code for _ in range(10)}

    assert statuses == {500}


def test_drop_rate_one_drops_every_call(api: Api, simulator: RunningSimulator) -> None:
    simulator.set_faults(drop_rate=1.0)

    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            api.get(f"machines/{DEVICE_WIN10}")


def _sequence(simulator: RunningSimulator, api: Api, seed: int) -> list[int]:
    simulator.set_faults(error_rate=0.5, seed=seed)
    return [api.get(f"machines/{DEVICE_WIN10}").status_code for _ in range(40)]


def test_random_errors_repeat_for_the_same_seed(
    api: Api, simulator: RunningSimulator
) -> None:
    first = _sequence(simulator, api, seed=11)
    simulator.advance(3600)  # a fresh rate-limit window

    second = _sequence(simulator, api, seed=11)

    assert first == second
    assert set(first) == {200, 500}


def test_latency_delays_the_answer_past_a_short_client_timeout(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(latency_ms=5000)

    with pytest.raises(requests.ReadTimeout):
        api.get(f"machines/{DEVICE_WIN10}", timeout=0.2)


def test_injected_faults_do_not_count_against_the_limits(
    api: Api, simulator: RunningSimulator
) -> None:
    simulator.set_faults(error_next=50, throttle_next=50)
    for _ in range(100):
        api.get(f"machines/{DEVICE_WIN10}")

    statuses = [api.get(f"machines/{DEVICE_WIN10}").status_code for _ in range(100)]

    assert statuses == [200] * 100


def test_faults_given_at_start_apply_from_the_first_call() -> None:
    faults = Faults(error_next=1)
    with start_simulator(clock=ManualClock(), faults=faults) as simulator:
        api = Api(simulator, "")
        first = api.get(f"machines/{DEVICE_WIN10}", token="x.y.z")
        api.close()

    assert first.status_code == 500


@pytest.mark.parametrize(
    "settings",
    [
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"error_rate": 0.6, "drop_rate": 0.6},
        {"latency_ms": -1},
        {"throttle_retry_after": -1},
    ],
)
def test_fault_settings_out_of_range_are_refused(
    simulator: RunningSimulator, settings: dict[str, float]
) -> None:
    with pytest.raises(FaultsError):
        simulator.set_faults(**settings)  # type: ignore[arg-type]


def test_faults_are_not_applied_to_the_control_endpoint(
    simulator: RunningSimulator,
) -> None:
    simulator.set_faults(error_rate=1.0)

    response = requests.get(f"{simulator.base_url}/_control/faults", timeout=10)

    assert response.status_code == 200
    assert response.json()["error_rate"] == 1.0
