"""Tokens: what make_token mints and how a caller is identified."""

from __future__ import annotations

import base64
import json

import pytest

from simulator.auth import (
    ALL_ROLES,
    DEFAULT_APP_ID,
    PLAYBOOK_ROLES,
    Caller,
    check_permissions,
    identify_caller,
    make_token,
)
from simulator.errors import ApiFailure


def _part(token: str, index: int) -> object:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_make_token_is_an_unsigned_jwt_with_roles() -> None:
    token = make_token(["Machine.Read.All", "File.Read.All"])

    assert token.endswith(".")
    assert _part(token, 0) == {"alg": "none", "typ": "JWT"}
    payload = _part(token, 1)
    assert isinstance(payload, dict)
    assert payload["roles"] == ["File.Read.All", "Machine.Read.All"]
    assert payload["appid"] == DEFAULT_APP_ID
    assert payload["aud"] == "https://api.securitycenter.microsoft.com"


def test_caller_is_identified_by_app_id_with_its_roles() -> None:
    caller = identify_caller(
        "Bearer " + make_token(PLAYBOOK_ROLES, app_id="app-1"),
        accept_any_token=False,
        wall_time=0,
    )

    assert caller == Caller("app-1", "app-1", frozenset(PLAYBOOK_ROLES))


def test_version_2_token_is_identified_by_azp() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"RS256"}').decode().rstrip("=")
    payload = (
        base64.urlsafe_b64encode(
            json.dumps({"azp": "app-2", "roles": ["Alert.Read.All"]}).encode()
        )
        .decode()
        .rstrip("=")
    )

    caller = identify_caller(
        f"bearer {header}.{payload}.c2ln", accept_any_token=False, wall_time=0
    )

    assert caller.app_id == "app-2"
    assert caller.roles == {"Alert.Read.All"}


def test_roles_that_are_not_a_list_of_strings_are_unauthorized() -> None:
    header = base64.urlsafe_b64encode(b"{}").decode().rstrip("=")
    payload = base64.urlsafe_b64encode(b'{"roles": "Machine.Read.All"}').decode()

    with pytest.raises(ApiFailure) as failure:
        identify_caller(
            f"Bearer {header}.{payload}.", accept_any_token=False, wall_time=0
        )

    assert failure.value.status == 401


def test_token_expiring_now_is_expired() -> None:
    token = make_token([], expires_at=100)

    with pytest.raises(ApiFailure) as failure:
        identify_caller("Bearer " + token, accept_any_token=False, wall_time=100)

    assert failure.value.code == "Unauthorized"


def test_accept_any_token_grants_every_role() -> None:
    caller = identify_caller("Bearer whatever", accept_any_token=True, wall_time=0)

    assert caller.roles == ALL_ROLES
    assert set(PLAYBOOK_ROLES) <= ALL_ROLES


def test_permissions_are_checked_requirement_by_requirement() -> None:
    caller = Caller("app", "app", frozenset({"Machine.Read.All"}))

    check_permissions(caller, [("Machine.Read.All", "Machine.ReadWrite.All")])
    with pytest.raises(ApiFailure) as failure:
        check_permissions(
            caller,
            [("Machine.StopAndQuarantine",), ("Machine.Read.All",)],
        )

    assert failure.value.status == 403
    assert "(Machine.StopAndQuarantine)" in failure.value.message
