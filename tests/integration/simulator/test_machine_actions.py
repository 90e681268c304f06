"""GET machineactions and machineactions/{id}: OData filters and paging."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import PLAYBOOK_ROLES, RunningSimulator, make_token
from simulator.demo import (
    DEVICE_WIN10,
    DEVICE_WIN11,
    FILE_THIRD_PARTY,
    FILE_UNSIGNED,
)
from tests.integration.simulator.client import Api, error_code

pytestmark = pytest.mark.integration

_OTHER_APP = "7a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture(name="three_actions")
def _three_actions(api: Api, simulator: RunningSimulator) -> list[dict[str, Any]]:
    """Actions created at 09:00:00 (win10), 09:01:00 (win11), 09:02:00 (win10)."""
    first = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()
    simulator.advance(60)
    second = api.quarantine(DEVICE_WIN11, FILE_UNSIGNED).json()
    simulator.advance(60)
    other = make_token(PLAYBOOK_ROLES, app_id=_OTHER_APP)
    third = api.quarantine(DEVICE_WIN10, FILE_THIRD_PARTY, token=other).json()
    return [first, second, third]


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [action["id"] for action in response.json()["value"]]


def test_list_answers_every_action_newest_first(
    api: Api, three_actions: list[dict[str, Any]]
) -> None:
    response = api.get("machineactions")

    assert response.json()["@odata.context"].endswith("#MachineActions")
    assert _ids(response) == [a["id"] for a in reversed(three_actions)]


def test_list_filters_on_machine_and_type(
    api: Api, three_actions: list[dict[str, Any]]
) -> None:
    query = f"machineId eq '{DEVICE_WIN10}' and type eq 'StopAndQuarantineFile'"

    response = api.get("machineactions", params={"$filter": query})

    assert _ids(response) == [three_actions[2]["id"], three_actions[0]["id"]]


def test_list_filters_on_status_as_it_is_now(
    api: Api, simulator: RunningSimulator
) -> None:
    older = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()["id"]
    simulator.advance(10)
    newer = api.quarantine(DEVICE_WIN11, FILE_UNSIGNED).json()["id"]

    in_progress = api.get(
        "machineactions", params={"$filter": "status eq 'InProgress'"}
    )
    pending = api.get("machineactions", params={"$filter": "status eq 'Pending'"})
    simulator.advance(20)
    succeeded = api.get("machineactions", params={"$filter": "status eq 'Succeeded'"})

    assert _ids(in_progress) == [older]
    assert _ids(pending) == [newer]
    assert _ids(succeeded) == [older]


def test_list_filters_on_requestor(
    api: Api, three_actions: list[dict[str, Any]]
) -> None:
    response = api.get(
        "machineactions", params={"$filter": f"requestor eq '{_OTHER_APP}'"}
    )

    assert _ids(response) == [three_actions[2]["id"]]


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("creationDateTimeUtc ge 2025-01-06T09:01:00Z", [2, 1]),
        ("creationDateTimeUtc gt 2025-01-06T09:01:00Z", [2]),
        ("creationDateTimeUtc lt 2025-01-06T09:01:00.0000000Z", [0]),
        ("CreationDateTimeUtc ge 2025-01-06", [2, 1, 0]),
    ],
)
def test_list_filters_on_creation_time(
    api: Api, three_actions: list[dict[str, Any]], clause: str, expected: list[int]
) -> None:
    response = api.get("machineactions", params={"$filter": clause})

    assert _ids(response) == [three_actions[i]["id"] for i in expected]


def test_list_honours_top_and_skip(
    api: Api, three_actions: list[dict[str, Any]]
) -> None:
    response = api.get("machineactions", params={"$top": "1", "$skip": "1"})

    assert _ids(response) == [three_actions[1]["id"]]


def test_list_with_top_over_10000_is_odata_error(api: Api) -> None:
    response = api.get("machineactions", params={"$top": "10001"})

    assert response.status_code == 400
    assert error_code(response) == "ODataError"


def test_list_with_stop_typo_is_odata_error_with_empty_code(api: Api) -> None:
    response = api.get("machineactions", params={"$stop": "2"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "",
            "message": "The query specified in the URI is not valid. Custom query "
            "option '$stop' that starts with '$' is not supported.",
            "details": [],
        }
    }


@pytest.mark.parametrize(
    "query",
    [
        "machineId eq",
        "machineId eq 'a' or type eq 'Isolate'",
        "machineId eq abc",
        "relatedFileInfo eq 'x'",
        "status eq 'Done'",
        "creationDateTimeUtc ge '2025-01-06T09:00:00Z'",
        "creationDateTimeUtc ge yesterday",
        "machineId gt 'a'",
        "",
    ],
)
def test_list_with_malformed_filter_is_odata_error(api: Api, query: str) -> None:
    response = api.get("machineactions", params={"$filter": query})

    assert response.status_code == 400
    assert error_code(response) == "ODataError"


def test_string_literal_may_hold_a_doubled_quote(api: Api) -> None:
    response = api.get("machineactions", params={"$filter": "requestor eq 'o''brien'"})

    assert _ids(response) == []


def test_get_action_answers_it_with_odata_context(
    api: Api, three_actions: list[dict[str, Any]]
) -> None:
    action_id = three_actions[1]["id"]

    response = api.get(f"machineactions/{action_id}")

    assert response.status_code == 200
    assert response.json()["@odata.context"].endswith("#MachineActions/$entity")
    assert response.json()["machineId"] == DEVICE_WIN11


@pytest.mark.parametrize("action_id", ["1e5bc9d7-e413-4ddd-9029-2c2932e41870", "42"])
def test_get_unknown_action_is_resource_not_found(api: Api, action_id: str) -> None:
    response = api.get(f"machineactions/{action_id}")

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"
