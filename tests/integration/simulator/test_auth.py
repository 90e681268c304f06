"""Bearer tokens and application permissions, with Defender's 401 and 403 shapes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from simulator import ManualClock, make_token, start_simulator
from simulator.demo import ALERT_THIRD_PARTY, DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.simulator.client import Api, error_code, error_message

pytestmark = pytest.mark.integration

_INDICATOR = {
    "indicatorValue": FILE_UNSIGNED,
    "indicatorType": "FileSha1",
    "action": "BlockAndRemediate",
    "title": "t",
    "description": "d",
}
_ACTION_ID = "1e5bc9d7-e413-4ddd-9029-2c2932e41870"

Call = Callable[[Api, str], requests.Response]

# Each API, with a call to it and the permissions any one of which lets it through.
_APIS: list[tuple[str, Call, tuple[str, ...]]] = [
    (
        "machine",
        lambda api, token: api.get(f"machines/{DEVICE_WIN10}", token=token),
        ("Machine.Read.All", "Machine.ReadWrite.All"),
    ),
    (
        "file",
        lambda api, token: api.get(f"files/{FILE_UNSIGNED}", token=token),
        ("File.Read.All",),
    ),
    (
        "deviceavinfo",
        lambda api, token: api.get("deviceavinfo", token=token),
        ("Machine.Read.All",),
    ),
    (
        "machineactions",
        lambda api, token: api.get("machineactions", token=token),
        ("Machine.Read.All", "Machine.ReadWrite.All"),
    ),
    (
        "machineaction",
        lambda api, token: api.get(f"machineactions/{_ACTION_ID}", token=token),
        ("Machine.Read.All", "Machine.ReadWrite.All"),
    ),
    (
        "cancel",
        lambda api, token: api.post(
            f"machineactions/{_ACTION_ID}/cancel", {"Comment": "c"}, token=token
        ),
        (
            "Machine.CollectForensics",
            "Machine.Isolate",
            "Machine.RestrictExecution",
            "Machine.Scan",
            "Machine.Offboard",
            "Machine.StopAndQuarantine",
            "Machine.LiveResponse",
        ),
    ),
    (
        "alert",
        lambda api, token: api.get(f"alerts/{ALERT_THIRD_PARTY}", token=token),
        ("Alert.Read.All", "Alert.ReadWrite.All"),
    ),
    (
        "indicator",
        lambda api, token: api.post("indicators", _INDICATOR, token=token),
        ("Ti.ReadWrite", "Ti.ReadWrite.All"),
    ),
]


def _forbidden_message(permissions: tuple[str, ...]) -> str:
    return (
        "The application does not have any of the required application permissions "
        f"({', '.join(permissions)}) to access the resource."
    )


@pytest.mark.parametrize(("name", "call", "permissions"), _APIS)
def test_call_without_bearer_token_is_unauthorized(
    api: Api, name: str, call: Call, permissions: tuple[str, ...]
) -> None:
    response = call(api, "")

    assert response.status_code == 401
    assert error_code(response) == "Unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("name", "call", "permissions"), _APIS)
def test_call_lacking_permission_is_forbidden_naming_the_permissions(
    api: Api, name: str, call: Call, permissions: tuple[str, ...]
) -> None:
    unrelated = make_token(["Vulnerability.Read.All"])

    response = call(api, unrelated)

    assert response.status_code == 403
    assert error_code(response) == "Forbidden"
    assert error_message(response) == _forbidden_message(permissions)


@pytest.mark.parametrize(
    ("name", "call", "permission"),
    [
        (name, call, permission)
        for name, call, options in _APIS
        for permission in options
    ],
)
def test_call_with_any_one_listed_permission_passes_the_permission_check(
    api: Api, name: str, call: Call, permission: str
) -> None:
    response = call(api, make_token([permission]))

    assert response.status_code not in (401, 403)


def test_quarantine_with_only_stop_and_quarantine_is_forbidden_naming_read(
    api: Api,
) -> None:
    token = make_token(["Machine.StopAndQuarantine"])

    response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED, token=token)

    assert response.status_code == 403
    assert error_message(response) == _forbidden_message(
        ("Machine.Read.All", "Machine.ReadWrite.All")
    )


@pytest.mark.parametrize("read", ["Machine.Read.All", "Machine.ReadWrite.All"])
def test_quarantine_with_only_read_permission_is_forbidden_naming_stop_and_quarantine(
    api: Api, read: str
) -> None:
    response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED, token=make_token([read]))

    assert response.status_code == 403
    assert error_message(response) == _forbidden_message(("Machine.StopAndQuarantine",))


@pytest.mark.parametrize("read", ["Machine.Read.All", "Machine.ReadWrite.All"])
def test_quarantine_with_stop_and_quarantine_and_a_read_permission_is_created(
    api: Api, read: str
) -> None:
    token = make_token(["Machine.StopAndQuarantine", read])

    response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED, token=token)

    assert response.status_code == 201


@pytest.mark.parametrize(
    "token",
    ["opaque-token", "a.b.c", "e30.e30", "eyJhbGciOiJub25lIn0.W10."],
    ids=["opaque", "not-base64-json", "two-parts", "payload-not-object"],
)
def test_token_that_is_not_a_jwt_is_unauthorized(api: Api, token: str) -> None:
    response = api.get(f"machines/{DEVICE_WIN10}", token=token)

    assert response.status_code == 401
    assert error_code(response) == "Unauthorized"


def test_expired_token_is_unauthorized(api: Api) -> None:
    token = make_token(["Machine.Read.All"], expires_at=time.time() - 60)

    response = api.get(f"machines/{DEVICE_WIN10}", token=token)

    assert response.status_code == 401


def test_token_for_another_audience_is_forbidden(api: Api) -> None:
    token = make_token(
        ["Machine.Read.All"], audience="https://api.security.microsoft.com"
    )

    response = api.get(f"machines/{DEVICE_WIN10}", token=token)

    assert response.status_code == 403
    assert error_code(response) == "Forbidden"


def test_basic_authorization_is_unauthorized(api: Api) -> None:
    response = api.session.get(
        api.url(f"machines/{DEVICE_WIN10}"), headers={"Authorization": "Basic dTpw"}
    )

    assert response.status_code == 401


def test_accept_any_token_lets_an_opaque_token_do_everything() -> None:
    with start_simulator(clock=ManualClock(), accept_any_token=True) as simulator:
        api = Api(simulator, "opaque-token")

        response = api.quarantine(DEVICE_WIN10, FILE_UNSIGNED)
        missing = api.get(f"machines/{DEVICE_WIN10}", token="")
        api.close()

    assert response.status_code == 201
    assert missing.status_code == 401
