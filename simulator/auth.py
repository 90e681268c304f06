"""Bearer tokens: who is calling, with which application permissions.

The simulator reads a token as Entra ID issues one for an application (client
credentials): a JWT whose payload carries ``roles``, ``appid`` and ``aud``. It does
not check signatures, so tests mint unsigned tokens with ``make_token``.

Limitations: signatures and issuers are not verified; delegated (user) tokens with
``scp`` instead of ``roles`` are read as holding no permission.
"""

from __future__ import annotations

__all__ = [
    "ALL_ROLES",
    "API_AUDIENCE",
    "DEFAULT_APP_ID",
    "PLAYBOOK_ROLES",
    "Caller",
    "Requirement",
    "check_permissions",
    "identify_caller",
    "make_token",
]

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.errors import ApiFailure

# The token audience of the Defender for Endpoint API (defender-api.md section 9): a
# token minted for api.security.microsoft.com is refused with 403 on these APIs.
API_AUDIENCE = "https://api.securitycenter.microsoft.com"
_ACCEPTED_AUDIENCES = frozenset({API_AUDIENCE, API_AUDIENCE + "/"})

# The application id make_token puts in tokens unless told otherwise.
DEFAULT_APP_ID = "5e3a6c0b-2f4d-4a57-9c1e-7d2b8f0a4c61"

# What the playbook needs: submit (StopAndQuarantine with a machine read permission,
# section 1.3), read devices, AV mode and files, read alerts, write block indicators.
PLAYBOOK_ROLES = (
    "Alert.Read.All",
    "File.Read.All",
    "Machine.Read.All",
    "Machine.StopAndQuarantine",
    "Ti.ReadWrite.All",
)

ALL_ROLES = frozenset(
    {
        *PLAYBOOK_ROLES,
        "Alert.ReadWrite.All",
        "Machine.CollectForensics",
        "Machine.Isolate",
        "Machine.LiveResponse",
        "Machine.Offboard",
        "Machine.ReadWrite.All",
        "Machine.RestrictExecution",
        "Machine.Scan",
        "Ti.ReadWrite",
    }
)

# Any one of these permissions satisfies a requirement; an API may need several.
Requirement = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Caller:
    """The application behind a request."""

    app_id: str
    requestor: str
    roles: frozenset[str]


def identify_caller(
    authorization: str | None, *, accept_any_token: bool, wall_time: float
) -> Caller:
    """Read the Authorization header; raises ApiFailure 401 or 403 when refused.

    ``wall_time`` is real time (not the simulator's clock), because a token's expiry
    is a fact about the world the token came from.
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Authorization header is missing or is not a bearer token.")

    if accept_any_token:
        readable = _claims_or_none(token) or {}
        app_id = _app_id(readable) or "any"
        return Caller(app_id, _requestor(readable) or app_id, ALL_ROLES)

    claims = _claims_or_none(token)
    if claims is None:
        raise _unauthorized("Invalid authorization header: not a JSON Web Token.")

    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires <= wall_time:
        raise _unauthorized("Expired authorization header: the token has expired.")

    audience = claims.get("aud")
    if audience is not None and audience not in _ACCEPTED_AUDIENCES:
        raise ApiFailure(
            403,
            "Forbidden",
            f"The token audience {audience} is not the resource {API_AUDIENCE}.",
        )

    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise _unauthorized("Invalid authorization header: roles must be strings.")

    app_id = _app_id(claims)
    return Caller(app_id, _requestor(claims) or "Unknown", frozenset(roles))


def check_permissions(caller: Caller, requirements: Sequence[Requirement]) -> None:
    """Raise 403 naming the first requirement the caller's roles do not meet."""
    for requirement in requirements:
        if caller.roles.isdisjoint(requirement):
            names = ", ".join(requirement)
            raise ApiFailure(
                403,
                "Forbidden",
                "The application does not have any of the required application "
                f"permissions ({names}) to access the resource.",
            )


def make_token(
    roles: Iterable[str],
    *,
    app_id: str = DEFAULT_APP_ID,
    app_name: str = "defender-quarantine tests",
    audience: str = API_AUDIENCE,
    expires_at: float | None = None,
) -> str:
    """An unsigned JWT (``alg`` none, empty signature) holding these roles."""
    header = {"alg": "none", "typ": "JWT"}
    payload: dict[str, Any] = {
        "aud": audience,
        "appid": app_id,
        "app_displayname": app_name,
        "roles": sorted(set(roles)),
    }
    if expires_at is not None:
        payload["exp"] = int(expires_at)

    return f"{_encode(header)}.{_encode(payload)}."


def _encode(part: dict[str, Any]) -> str:
    raw = json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _claims_or_none(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None

    try:
        header, payload = (_decode(part) for part in parts[:2])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None

    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return payload


def _decode(part: str) -> object:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _app_id(claims: dict[str, Any]) -> str:
    # Version 1 tokens carry "appid", version 2 tokens "azp".
    for key in ("appid", "azp"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _requestor(claims: dict[str, Any]) -> str:
    for key in ("appid", "azp", "app_displayname", "upn"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _unauthorized(message: str) -> ApiFailure:
    return ApiFailure(
        401, "Unauthorized", message, headers=(("WWW-Authenticate", "Bearer"),)
    )
