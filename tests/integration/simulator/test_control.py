"""The control endpoint under /_control, for steering from another process."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from simulator import RunningSimulator, demo_tenant, start_simulator
from simulator.demo import DEVICE_INACTIVE, DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.simulator.client import Api, error_code

pytestmark = pytest.mark.integration


def _control(
    simulator: RunningSimulator, method: str, path: str, body: Any = None
) -> requests.Response:
    return requests.request(
        method, f"{simulator.base_url}/_control/{path}", json=body, timeout=10
    )


def test_posted_faults_apply_to_the_next_api_call(
    api: Api, simulator: RunningSimulator
) -> None:
    answer = _control(simulator, "POST", "faults", {"error_next": 1, "seed": 3})

    failed = api.get(f"machines/{DEVICE_WIN10}")
    served = api.get(f"machines/{DEVICE_WIN10}")

    assert answer.status_code == 200
    assert answer.json()["error_next"] == 1
    assert answer.json()["seed"] == 3
    assert failed.status_code == 500
    assert served.status_code == 200


def test_posted_drop_mode_after_is_applied(
    api: Api, simulator: RunningSimulator
) -> None:
    _control(simulator, "POST", "faults", {"drop_next": 1, "drop_mode": "after"})

    with pytest.raises(requests.ConnectionError):
        api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert len(api.get("machineactions").json()["value"]) == 1


@pytest.mark.parametrize(
    "body",
    [{"error_rate": 5}, {"errors": 1}, {"drop_mode": "sideways"}, [1], {"seed": "x"}],
)
def test_invalid_fault_settings_are_refused_with_400(
    simulator: RunningSimulator, body: Any
) -> None:
    response = _control(simulator, "POST", "faults", body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_non_json_control_body_is_refused(simulator: RunningSimulator) -> None:
    response = requests.post(
        f"{simulator.base_url}/_control/faults", data=b"{", timeout=10
    )

    assert response.status_code == 400


def test_request_log_lists_api_calls_only(
    api: Api, simulator: RunningSimulator
) -> None:
    api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)
    api.get("machineactions", params={"$top": "5"})

    entries = _control(simulator, "GET", "requests").json()["requests"]

    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", f"/api/machines/{DEVICE_WIN10}/StopAndQuarantineFile", 201),
        ("GET", "/api/machineactions", 200),
    ]
    assert entries[0]["machine_id"] == DEVICE_WIN10
    assert entries[0]["sha1"] == FILE_UNSIGNED
    assert entries[1]["query"] == {"$top": "5"}
    assert entries[0]["timestamp"] == "2025-01-06T09:00:00.0000000Z"


def test_request_log_can_be_cleared(api: Api, simulator: RunningSimulator) -> None:
    api.get(f"machines/{DEVICE_WIN10}")

    cleared = _control(simulator, "POST", "requests/clear")

    assert cleared.status_code == 200
    assert simulator.request_log() == []


def test_reset_forgets_actions_limits_and_faults(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]
    for _ in range(100):
        api.get(f"machines/{DEVICE_WIN10}")
    simulator.set_faults(error_rate=0.5)
    simulator.set_device_health(DEVICE_INACTIVE, "Active")

    reset = _control(simulator, "POST", "reset")

    assert reset.status_code == 200
    assert api.get(f"machineactions/{action_id}").status_code == 404
    assert api.get(f"machines/{DEVICE_WIN10}").status_code == 200
    assert simulator.tenant == demo_tenant()
    assert _control(simulator, "GET", "faults").json()["error_rate"] == 0.0


def test_advance_moves_a_manual_clock(api: Api, simulator: RunningSimulator) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]

    answer = _control(simulator, "POST", "advance", {"seconds": 30})

    assert answer.json() == {"now": "2025-01-06T09:00:30.0000000Z"}
    assert api.get(f"machineactions/{action_id}").json()["status"] == "Succeeded"


@pytest.mark.parametrize("body", [{"seconds": -1}, {"seconds": "1"}, {}])
def test_advance_with_bad_seconds_is_refused(
    simulator: RunningSimulator, body: Any
) -> None:
    response = _control(simulator, "POST", "advance", body)

    assert response.status_code == 400


def test_advance_on_wall_clock_is_a_conflict() -> None:
    with start_simulator(time_scale=10) as simulator:
        response = _control(simulator, "POST", "advance", {"seconds": 1})

    assert response.status_code == 409


def test_device_health_can_be_set(api: Api, simulator: RunningSimulator) -> None:
    answer = _control(
        simulator,
        "POST",
        f"devices/{DEVICE_INACTIVE}/health",
        {"healthStatus": "Active"},
    )

    assert answer.status_code == 200
    assert api.get(f"machines/{DEVICE_INACTIVE}").json()["healthStatus"] == "Active"


def test_device_health_of_unknown_device_is_refused(
    simulator: RunningSimulator,
) -> None:
    response = _control(
        simulator, "POST", f"devices/{'0' * 40}/health", {"healthStatus": "Active"}
    )

    assert response.status_code == 400


def test_tenant_answers_the_seed(simulator: RunningSimulator) -> None:
    response = _control(simulator, "GET", "tenant")

    assert response.json() == demo_tenant().to_json()


def test_unknown_control_command_is_not_found(simulator: RunningSimulator) -> None:
    assert _control(simulator, "GET", "nothing").status_code == 404


def test_path_outside_api_and_control_is_not_found(
    simulator: RunningSimulator,
) -> None:
    response = requests.get(f"{simulator.base_url}/machines", timeout=10)

    assert response.status_code == 404
    assert error_code(response) == "NotFound"


def test_unknown_api_path_is_not_found(api: Api) -> None:
    response = api.get("machines/x/y/z")

    assert response.status_code == 404
    assert error_code(response) == "NotFound"
