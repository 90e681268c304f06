"""Rate limits: each API's budget per application, at its boundaries."""

from __future__ import annotations

import pytest

from simulator import PLAYBOOK_ROLES, RunningSimulator, make_token
from simulator.demo import DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.simulator.client import Api, error_code

pytestmark = pytest.mark.integration


def _read_machine(api: Api, token: str | None = None) -> int:
    return api.get(f"machines/{DEVICE_WIN10}", token=token).status_code


def test_100th_call_in_a_minute_passes_and_101st_is_throttled(
    api: Api, simulator: RunningSimulator
) -> None:
    statuses = []
    for _ in range(100):
        statuses.append(_read_machine(api))
        simulator.advance(0.5)

    throttled = api.get(f"machines/{DEVICE_WIN10}")

    assert statuses == [200] * 100
    assert throttled.status_code == 429
    assert error_code(throttled) == "TooManyRequests"
    # The first call was made 50 s ago; it leaves the window in 10 s.
    assert throttled.headers["Retry-After"] == "10"


def test_retry_after_rounds_up_to_whole_seconds(
    api: Api, simulator: RunningSimulator
) -> None:
    for _ in range(100):
        _read_machine(api)
    simulator.advance(50.2)

    throttled = api.get(f"machines/{DEVICE_WIN10}")

    assert throttled.headers["Retry-After"] == "10"


def test_retry_after_is_at_least_one_second(
    api: Api, simulator: RunningSimulator
) -> None:
    for _ in range(100):
        _read_machine(api)
    simulator.advance(59.9)

    throttled = api.get(f"machines/{DEVICE_WIN10}")

    assert throttled.headers["Retry-After"] == "1"


def test_throttled_call_passes_once_retry_after_has_elapsed(
    api: Api, simulator: RunningSimulator
) -> None:
    _read_machine(api)
    simulator.advance(1)
    for _ in range(99):
        _read_machine(api)
    retry_after = int(api.get(f"machines/{DEVICE_WIN10}").headers["Retry-After"])

    simulator.advance(retry_after - 0.001)
    still_throttled = _read_machine(api)
    simulator.advance(0.001)
    freed = _read_machine(api)
    throttled_again = _read_machine(api)

    assert retry_after == 59
    assert still_throttled == 429
    assert freed == 200
    # Only the first call has left the window, so only one slot freed.
    assert throttled_again == 429


def test_1500th_call_in_an_hour_passes_and_1501st_is_throttled(
    api: Api, simulator: RunningSimulator
) -> None:
    statuses = []
    for minute in range(15):
        statuses.extend(_read_machine(api) for _ in range(100))
        if minute < 14:
            simulator.advance(60)

    simulator.advance(60)
    throttled = api.get(f"machines/{DEVICE_WIN10}")

    assert statuses == [200] * 1500
    assert throttled.status_code == 429
    # The first hundred calls were made 15 minutes ago and leave the hour in 45.
    assert throttled.headers["Retry-After"] == str(45 * 60)


def test_deviceavinfo_allows_30_calls_a_minute(
    api: Api, simulator: RunningSimulator
) -> None:
    statuses = [api.get("deviceavinfo").status_code for _ in range(30)]

    throttled = api.get("deviceavinfo")
    simulator.advance(60)
    freed = api.get("deviceavinfo")

    assert statuses == [200] * 30
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "60"
    assert freed.status_code == 200


def test_deviceavinfo_allows_1000_calls_an_hour(
    api: Api, simulator: RunningSimulator
) -> None:
    passed = 0
    for _ in range(34):
        passed += sum(api.get("deviceavinfo").status_code == 200 for _ in range(30))
        simulator.advance(60)

    assert passed == 1000
    assert api.get("deviceavinfo").status_code == 429


def test_each_api_has_its_own_budget(api: Api) -> None:
    for _ in range(100):
        _read_machine(api)

    file_lookup = api.get(f"files/{FILE_UNSIGNED}")
    quarantine = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert _read_machine(api) == 429
    assert file_lookup.status_code == 200
    assert quarantine.status_code == 201


def test_each_application_has_its_own_budget(api: Api) -> None:
    other = make_token(PLAYBOOK_ROLES, app_id="7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    for _ in range(100):
        _read_machine(api)

    assert _read_machine(api) == 429
    assert _read_machine(api, other) == 200


def test_calls_refused_for_permission_or_as_not_found_count_against_the_limit(
    api: Api,
) -> None:
    weak = make_token(["File.Read.All"])
    for _ in range(50):
        assert _read_machine(api, weak) == 403
    for _ in range(50):
        assert api.get("machines/" + "f" * 40).status_code == 404

    assert _read_machine(api) == 429


def test_unauthenticated_and_throttled_calls_do_not_count(
    api: Api, simulator: RunningSimulator
) -> None:
    for _ in range(20):
        assert _read_machine(api, "") == 401
    for _ in range(100):
        _read_machine(api)
    for _ in range(20):
        assert _read_machine(api) == 429

    simulator.advance(60)

    assert [_read_machine(api) for _ in range(100)] == [200] * 100


def test_quarantine_limit_is_100_a_minute(
    api: Api, simulator: RunningSimulator
) -> None:
    # Repeats on one target are refused as duplicates, and still count.
    statuses = [
        api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).status_code for _ in range(100)
    ]

    throttled = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert statuses[0] == 201
    assert set(statuses[1:]) == {400}
    assert throttled.status_code == 429
