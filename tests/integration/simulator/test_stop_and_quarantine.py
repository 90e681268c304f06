"""POST /api/machines/{id}/StopAndQuarantineFile: the answer and every refusal."""

from __future__ import annotations

import re
import uuid

import pytest

from simulator import PLAYBOOK_ROLES, RunningSimulator, make_token
from simulator.demo import (
    DEVICE_LINUX,
    DEVICE_MACOS,
    DEVICE_SERVER_2019,
    DEVICE_WIN10,
    DEVICE_WIN11,
    FILE_NEVER_SEEN,
    FILE_SEEN_ON_WIN11_ONLY,
    FILE_THIRD_PARTY,
    FILE_UNSIGNED,
    UNKNOWN_SHA1,
)
from tests.integration.simulator.client import Api, error_code, error_message

pytestmark = pytest.mark.integration

_LIVE_FIELDS = [
    "@odata.context",
    "id",
    "type",
    "title",
    "requestor",
    "requestorComment",
    "status",
    "machineId",
    "computerDnsName",
    "creationDateTimeUtc",
    "lastUpdateDateTimeUtc",
    "cancellationRequestor",
    "cancellationComment",
    "cancellationDateTimeUtc",
    "errorHResult",
    "scope",
    "externalId",
    "requestSource",
    "relatedFileInfo",
    "commands",
    "troubleshootInfo",
]
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


def _path(machine_id: str) -> str:
    return f"machines/{machine_id}/StopAndQuarantineFile"


def test_quarantine_of_observed_file_answers_201_with_live_machine_action(
    api: Api,
) -> None:
    response = api.post(
        _path(DEVICE_WIN10), {"Comment": "due to alert da1_2", "Sha1": FILE_THIRD_PARTY}
    )

    assert response.status_code == 201
    action = response.json()
    assert list(action) == _LIVE_FIELDS
    assert action["@odata.context"].endswith("#MachineActions/$entity")
    assert uuid.UUID(action["id"])
    assert action["type"] == "StopAndQuarantineFile"
    assert action["status"] == "Pending"
    assert action["machineId"] == DEVICE_WIN10
    assert action["computerDnsName"] == "win10-22h2.contoso.test"
    assert action["requestorComment"] == "due to alert da1_2"
    assert action["requestSource"] == "PublicApi"
    assert action["errorHResult"] == 0
    assert action["commands"] == []
    assert action["relatedFileInfo"] == {
        "fileIdentifier": FILE_THIRD_PARTY,
        "fileIdentifierType": "Sha1",
    }
    assert _TIMESTAMP.match(action["creationDateTimeUtc"])
    assert action["lastUpdateDateTimeUtc"] == action["creationDateTimeUtc"]


def test_quarantine_names_the_token_application_as_requestor(
    api: Api, simulator: RunningSimulator
) -> None:
    token = make_token(PLAYBOOK_ROLES, app_id="0b6f8a3e-1d2c-4e5f-8a9b-0c1d2e3f4a5b")

    response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED, token=token)

    assert response.json()["requestor"] == "0b6f8a3e-1d2c-4e5f-8a9b-0c1d2e3f4a5b"


def test_quarantine_accepts_upper_case_sha1_and_reports_it_lower_case(api: Api) -> None:
    response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED.upper())

    assert response.status_code == 201
    assert response.json()["relatedFileInfo"]["fileIdentifier"] == FILE_UNSIGNED


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"Comment": "c", "sha1": FILE_UNSIGNED}, "Sha1"),
        ({"comment": "c", "Sha1": FILE_UNSIGNED}, "Comment"),
        ({"Sha1": FILE_UNSIGNED}, "Comment"),
        ({"Comment": "  ", "Sha1": FILE_UNSIGNED}, "Comment"),
        ({"Comment": "c"}, "Sha1"),
    ],
)
def test_quarantine_with_missing_or_miscased_parameter_names_it(
    api: Api, body: dict[str, str], missing: str
) -> None:
    response = api.post(_path(DEVICE_WIN10), body)

    assert response.status_code == 400
    assert error_code(response) == "MissingRequiredParameter"
    assert error_message(response) == f"Parameter {missing} is missing."


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1, 2]", b"", b'{"Comment": "c", "Sha1": 42}'],
)
def test_quarantine_with_unreadable_body_is_invalid_request_body(
    api: Api, data: bytes
) -> None:
    response = api.post(_path(DEVICE_WIN10), data=data)

    assert response.status_code == 400
    assert error_code(response) == "InvalidRequestBody"


def test_quarantine_with_unknown_extra_parameter_is_invalid_request_body(
    api: Api,
) -> None:
    body = {"Comment": "c", "Sha1": FILE_UNSIGNED, "ExternalId": "x"}

    response = api.post(_path(DEVICE_WIN10), body)

    assert response.status_code == 400
    assert error_code(response) == "InvalidRequestBody"
    assert "ExternalId" in error_message(response)


def test_quarantine_without_json_content_type_is_invalid_request_body(
    api: Api,
) -> None:
    response = api.post(
        _path(DEVICE_WIN10),
        {"Comment": "c", "Sha1": FILE_UNSIGNED},
        content_type="text/plain",
    )

    assert response.status_code == 400
    assert error_code(response) == "InvalidRequestBody"


@pytest.mark.parametrize(
    "bad_hash",
    ["abc", FILE_UNSIGNED + "00", "z" * 40, "ab" * 32],
)
def test_quarantine_with_malformed_sha1_is_invalid_hash_value(
    api: Api, bad_hash: str
) -> None:
    response = api.quarantine(DEVICE_WIN10, bad_hash)

    assert response.status_code == 400
    assert error_code(response) == "InvalidHashValue"
    assert error_message(response) == f"Hash value {bad_hash} is invalid."


@pytest.mark.parametrize("machine_id", ["f" * 40, "not-a-device-id", "123"])
def test_quarantine_on_unknown_machine_is_resource_not_found(
    api: Api, machine_id: str
) -> None:
    response = api.quarantine(machine_id, FILE_UNSIGNED)

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"
    assert error_message(response) == f"Machine {machine_id} was not found"


@pytest.mark.parametrize(
    ("machine_id", "sha1"),
    [
        (DEVICE_WIN10, FILE_SEEN_ON_WIN11_ONLY),
        (DEVICE_WIN10, FILE_NEVER_SEEN),
        (DEVICE_WIN11, UNKNOWN_SHA1),
    ],
)
def test_quarantine_of_file_never_seen_on_machine_is_resource_not_found(
    api: Api, machine_id: str, sha1: str
) -> None:
    response = api.quarantine(machine_id, sha1)

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"
    assert (
        error_message(response) == f"Sha1 {sha1} was not found in machine {machine_id}"
    )


def test_quarantine_of_file_seen_only_on_that_machine_is_accepted(api: Api) -> None:
    response = api.quarantine(DEVICE_WIN11, FILE_SEEN_ON_WIN11_ONLY)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("machine_id", "platform"), [(DEVICE_MACOS, "macOS"), (DEVICE_LINUX, "Linux")]
)
def test_quarantine_on_macos_or_linux_is_os_platform_not_supported(
    api: Api, machine_id: str, platform: str
) -> None:
    response = api.quarantine(machine_id, FILE_UNSIGNED)

    assert response.status_code == 400
    assert error_code(response) == "OsPlatformNotSupported"
    assert error_message(response) == (
        f"OS Platform {platform} isn't supported for this action."
    )


def test_quarantine_on_windows_server_is_accepted_and_fails_later(api: Api) -> None:
    response = api.quarantine(DEVICE_SERVER_2019, FILE_THIRD_PARTY)

    assert response.status_code == 201
    assert response.json()["status"] == "Pending"


def test_second_quarantine_of_open_target_is_active_request_already_exists(
    api: Api,
) -> None:
    first = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    second = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert first.status_code == 201
    assert second.status_code == 400
    assert error_code(second) == "ActiveRequestAlreadyExists"
    assert error_message(second) == "Action is already in progress"


def test_quarantine_of_same_file_on_other_machine_is_not_a_duplicate(api: Api) -> None:
    api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    response = api.quarantine(DEVICE_WIN11, FILE_UNSIGNED)

    assert response.status_code == 201


def test_quarantine_after_previous_action_settled_creates_new_action(
    api: Api, simulator: RunningSimulator
) -> None:
    first = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()
    simulator.advance(30)

    second = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)

    assert second.status_code == 201
    assert second.json()["id"] != first["id"]


def test_every_error_carries_a_fresh_correlation_guid(api: Api) -> None:
    first = api.quarantine("f" * 40, FILE_UNSIGNED).json()["error"]

    second = api.quarantine("f" * 40, FILE_UNSIGNED).json()["error"]

    assert set(first) == {"code", "message", "target"}
    assert uuid.UUID(first["target"]) != uuid.UUID(second["target"])


def test_quarantine_path_matches_in_any_letter_case_and_with_version(
    api: Api,
) -> None:
    lower = api.post(
        f"machines/{DEVICE_WIN10}/stopandquarantinefile",
        {"Comment": "c", "Sha1": FILE_UNSIGNED},
    )
    versioned = api.post(
        f"v1.0/machines/{DEVICE_WIN11}/StopAndQuarantineFile",
        {"Comment": "c", "Sha1": FILE_UNSIGNED},
    )

    assert lower.status_code == 201
    assert versioned.status_code == 201


def test_quarantine_is_logged_with_machine_and_sha1(
    api: Api, simulator: RunningSimulator
) -> None:
    action = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED).json()

    [entry] = simulator.request_log()

    assert entry.method == "POST"
    assert entry.path == f"/api/machines/{DEVICE_WIN10}/StopAndQuarantineFile"
    assert entry.status == 201
    assert entry.machine_id == DEVICE_WIN10
    assert entry.sha1 == FILE_UNSIGNED
    assert entry.action_id == action["id"]
    assert entry.timestamp == simulator.now()
