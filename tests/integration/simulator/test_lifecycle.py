"""A machine action's life on the simulator's clock, and cancelling one."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import RunningSimulator
from simulator.actions import (
    HRESULT_ANTIVIRUS_NOT_RUNNING,
    HRESULT_TRUSTED_FILE,
    HRESULT_UNSUPPORTED_OS,
)
from simulator.demo import (
    DEVICE_INACTIVE,
    DEVICE_SERVER_2019,
    DEVICE_WIN10,
    DEVICE_WIN10_1607,
    DEVICE_WIN10_1703,
    DEVICE_WIN10_AV_DISABLED,
    DEVICE_WIN10_AV_EDR_BLOCKED,
    DEVICE_WIN10_AV_OTHER,
    DEVICE_WIN10_AV_PASSIVE,
    DEVICE_WIN10_AV_PASSIVE_AUDIT,
    DEVICE_WIN10_AV_UNREPORTED,
    DEVICE_WIN11,
    FILE_INVALID_CERTIFICATE,
    FILE_MICROSOFT_SIGNED,
    FILE_THIRD_PARTY,
    FILE_TRUSTED_PUBLISHER,
    FILE_UNSIGNED,
)
from tests.integration.simulator.client import Api, error_code

pytestmark = pytest.mark.integration

_DAY = 24 * 3600


def _action(api: Api, action_id: str) -> dict[str, Any]:
    response = api.get(f"machineactions/{action_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_action_moves_pending_in_progress_succeeded_on_the_clock(
    api: Api, simulator: RunningSimulator
) -> None:
    created = api.quarantine(DEVICE_WIN10, FILE_THIRD_PARTY).json()
    action_id = created["id"]

    simulator.advance(4.9)
    still_pending = _action(api, action_id)
    simulator.advance(0.1)
    in_progress = _action(api, action_id)
    simulator.advance(24.9)
    not_yet_done = _action(api, action_id)
    simulator.advance(0.1)
    succeeded = _action(api, action_id)

    assert still_pending["status"] == "Pending"
    assert still_pending["lastUpdateDateTimeUtc"] == created["creationDateTimeUtc"]
    assert in_progress["status"] == "InProgress"
    assert in_progress["lastUpdateDateTimeUtc"] == "2025-01-06T09:00:05.0000000Z"
    assert not_yet_done["status"] == "InProgress"
    assert succeeded["status"] == "Succeeded"
    assert succeeded["errorHResult"] == 0
    assert succeeded["lastUpdateDateTimeUtc"] == "2025-01-06T09:00:30.0000000Z"
    assert succeeded["creationDateTimeUtc"] == created["creationDateTimeUtc"]


def test_settled_action_keeps_the_time_it_settled(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_THIRD_PARTY).json()["id"]

    simulator.advance(3600)
    action = _action(api, action_id)

    assert action["status"] == "Succeeded"
    assert action["lastUpdateDateTimeUtc"] == "2025-01-06T09:00:30.0000000Z"


@pytest.mark.parametrize(
    ("machine_id", "sha1", "hresult"),
    [
        (DEVICE_WIN10_1607, FILE_THIRD_PARTY, HRESULT_UNSUPPORTED_OS),
        (DEVICE_SERVER_2019, FILE_THIRD_PARTY, HRESULT_UNSUPPORTED_OS),
        (DEVICE_WIN10_AV_DISABLED, FILE_THIRD_PARTY, HRESULT_ANTIVIRUS_NOT_RUNNING),
        (DEVICE_WIN10_AV_OTHER, FILE_THIRD_PARTY, HRESULT_ANTIVIRUS_NOT_RUNNING),
        (DEVICE_WIN10_AV_UNREPORTED, FILE_THIRD_PARTY, HRESULT_ANTIVIRUS_NOT_RUNNING),
        (
            DEVICE_WIN10_AV_PASSIVE_AUDIT,
            FILE_THIRD_PARTY,
            HRESULT_ANTIVIRUS_NOT_RUNNING,
        ),
        (DEVICE_WIN10, FILE_MICROSOFT_SIGNED, HRESULT_TRUSTED_FILE),
        (DEVICE_WIN11, FILE_TRUSTED_PUBLISHER, HRESULT_TRUSTED_FILE),
    ],
)
def test_action_on_target_failing_prerequisites_is_accepted_then_fails(
    api: Api, simulator: RunningSimulator, machine_id: str, sha1: str, hresult: int
) -> None:
    response = api.quarantine(machine_id, sha1)

    simulator.advance(30)
    action = _action(api, response.json()["id"])

    assert response.status_code == 201
    assert action["status"] == "Failed"
    assert action["errorHResult"] == hresult


@pytest.mark.parametrize(
    ("machine_id", "sha1"),
    [
        (DEVICE_WIN10_1703, FILE_THIRD_PARTY),
        (DEVICE_WIN11, FILE_UNSIGNED),
        (DEVICE_WIN10_AV_PASSIVE, FILE_INVALID_CERTIFICATE),
        (DEVICE_WIN10_AV_EDR_BLOCKED, FILE_UNSIGNED),
    ],
)
def test_action_on_eligible_target_succeeds(
    api: Api, simulator: RunningSimulator, machine_id: str, sha1: str
) -> None:
    action_id = api.quarantine(machine_id, sha1).json()["id"]

    simulator.advance(30)

    assert _action(api, action_id)["status"] == "Succeeded"


def test_action_on_inactive_device_stays_pending_then_times_out_after_3_days(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_INACTIVE, FILE_UNSIGNED).json()["id"]

    simulator.advance(3 * _DAY - 1)
    waiting = _action(api, action_id)
    simulator.advance(1)
    timed_out = _action(api, action_id)

    assert waiting["status"] == "Pending"
    assert timed_out["status"] == "TimeOut"
    assert timed_out["lastUpdateDateTimeUtc"] == "2025-01-09T09:00:00.0000000Z"


def test_action_is_delivered_when_its_device_comes_back_within_3_days(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_INACTIVE, FILE_UNSIGNED).json()["id"]
    simulator.advance(2 * _DAY)

    simulator.set_device_health(DEVICE_INACTIVE, "Active")
    simulator.advance(30)

    assert _action(api, action_id)["status"] == "Succeeded"
    assert simulator.tenant.device(DEVICE_INACTIVE).is_active


def test_action_on_device_that_comes_back_too_late_has_timed_out(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_INACTIVE, FILE_UNSIGNED).json()["id"]
    simulator.advance(4 * _DAY)

    simulator.set_device_health(DEVICE_INACTIVE, "Active")
    simulator.advance(30)

    assert _action(api, action_id)["status"] == "TimeOut"


def test_cancel_of_open_action_answers_200_cancelled(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]
    simulator.advance(10)

    response = api.post(
        f"machineactions/{action_id}/cancel", {"Comment": "false alarm"}
    )
    simulator.advance(60)
    later = _action(api, action_id)

    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["status"] == "Cancelled"
    assert cancelled["cancellationComment"] == "false alarm"
    assert cancelled["cancellationRequestor"] == cancelled["requestor"]
    assert cancelled["cancellationDateTimeUtc"] == "2025-01-06T09:00:10.0000000Z"
    assert cancelled["lastUpdateDateTimeUtc"] == "2025-01-06T09:00:10.0000000Z"
    assert later["status"] == "Cancelled"


def test_cancelled_target_can_be_submitted_again(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]
    api.post(f"machineactions/{action_id}/cancel", {"Comment": "retry"})

    response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert response.status_code == 201


def test_cancel_of_settled_action_is_bad_request(
    api: Api, simulator: RunningSimulator
) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]
    simulator.advance(30)

    response = api.post(f"machineactions/{action_id}/cancel", {"Comment": "too late"})

    assert response.status_code == 400
    assert error_code(response) == "BadRequest"
    assert _action(api, action_id)["status"] == "Succeeded"


def test_cancel_of_unknown_action_is_resource_not_found(api: Api) -> None:
    response = api.post(
        "machineactions/1e5bc9d7-e413-4ddd-9029-2c2932e41870/cancel", {"Comment": "x"}
    )

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"


def test_cancel_without_comment_is_missing_required_parameter(api: Api) -> None:
    action_id = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]

    response = api.post(f"machineactions/{action_id}/cancel", {"comment": "x"})

    assert response.status_code == 400
    assert error_code(response) == "MissingRequiredParameter"
