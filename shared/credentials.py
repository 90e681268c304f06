"""Bearer tokens for the Defender API, and a check of the permissions they carry.

The credential is chosen from the settings in a fixed order: a client certificate,
else a client secret (both need the tenant and client id), else a managed identity
(user-assigned when its client id is set). azure-identity caches tokens and renews
them before they expire, so the client asks for a token on every request.

``DEFENDER_TOKEN`` is a fixed token for local development and tests. It is refused
unless the API host is on loopback, so that no deployment can skip sign-in.
"""

from __future__ import annotations

__all__ = [
    "REQUIRED_PERMISSIONS",
    "CredentialKind",
    "IdentityTokenProvider",
    "PermissionReport",
    "RequiredPermission",
    "StaticTokenProvider",
    "TokenProvider",
    "build_token_provider",
    "check_permissions",
    "decode_token_claims",
]

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
)

from shared.clouds import Cloud, is_loopback_url
from shared.errors import SettingsError
from shared.settings import Settings

logger = logging.getLogger(__name__)


class CredentialKind(StrEnum):
    """How the playbook signs in to Defender (names of kinds, never secrets)."""

    STATIC_TOKEN = "static-token"  # noqa: S105
    CLIENT_CERTIFICATE = "client-certificate"
    CLIENT_SECRET = "client-secret"  # noqa: S105
    USER_ASSIGNED_IDENTITY = "user-assigned-managed-identity"
    SYSTEM_ASSIGNED_IDENTITY = "system-assigned-managed-identity"


class TokenProvider(Protocol):
    """Gives a bearer token for the Defender API."""

    @property
    def kind(self) -> CredentialKind: ...

    def get_token(self, *, force_refresh: bool = False) -> str:
        """A token valid now; ``force_refresh`` skips any cached one."""
        ...


class StaticTokenProvider:
    """The same token every time; for loopback development and tests only."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticTokenProvider(<token>)"

    @property
    def kind(self) -> CredentialKind:
        return CredentialKind.STATIC_TOKEN

    def get_token(self, *, force_refresh: bool = False) -> str:
        # Nothing to refresh: a rejected fixed token stays rejected, and the
        # client reports the second 401 as an authentication error.
        return self._token


class IdentityTokenProvider:
    """Tokens from an azure-identity credential, for one scope.

    The credential is built on first use, so that building the provider never
    touches the network or the certificate file. A forced refresh builds a new
    credential from ``factory``: azure-identity has no switch to bypass its
    in-memory cache, and a new credential starts empty.
    """

    __slots__ = ("_credential", "_factory", "_kind", "_scope")

    def __init__(
        self,
        *,
        kind: CredentialKind,
        factory: Callable[[], TokenCredential],
        scope: str,
    ) -> None:
        self._kind = kind
        self._factory = factory
        self._scope = scope
        self._credential: TokenCredential | None = None

    @property
    def kind(self) -> CredentialKind:
        return self._kind

    def get_token(self, *, force_refresh: bool = False) -> str:
        if force_refresh or self._credential is None:
            self._credential = self._factory()
        return self._credential.get_token(self._scope).token


def build_token_provider(settings: Settings, cloud: Cloud) -> TokenProvider:
    """Choose the credential the settings describe, and log which one was chosen.

    Raises:
        SettingsError: a fixed token for a host that is not loopback, or a secret
            or certificate without the tenant and client id it needs.
    """
    kind, factory = _choose_credential(settings, cloud)
    logger.info(
        "defender.credential",
        extra={
            "credential_kind": str(kind),
            "tenant_id": settings.defender_tenant_id,
            "client_id": settings.defender_client_id
            or settings.defender_managed_identity_client_id,
            "authority_host": cloud.authority_host,
            "scope": cloud.scope,
            "api_host": cloud.api_host,
        },
    )

    if factory is None:
        assert settings.defender_token is not None
        return StaticTokenProvider(settings.defender_token)
    return IdentityTokenProvider(kind=kind, factory=factory, scope=cloud.scope)


def _choose_credential(
    settings: Settings, cloud: Cloud
) -> tuple[CredentialKind, Callable[[], TokenCredential] | None]:
    if settings.defender_token:
        if not is_loopback_url(cloud.api_url):
            raise SettingsError(
                [
                    "DEFENDER_TOKEN: a fixed token is accepted only when the API "
                    "host is on loopback (127.0.0.0/8, ::1, localhost); remove it "
                    "and configure a managed identity or an app registration"
                ]
            )
        return CredentialKind.STATIC_TOKEN, None

    tenant_id = settings.defender_tenant_id
    client_id = settings.defender_client_id
    certificate_path = settings.defender_client_certificate_path
    secret = settings.defender_client_secret

    if certificate_path or secret:
        uses = (
            "DEFENDER_CLIENT_CERTIFICATE_PATH"
            if certificate_path
            else "DEFENDER_CLIENT_SECRET"
        )
        if not tenant_id or not client_id:
            missing = [
                name
                for name, value in (
                    ("DEFENDER_TENANT_ID", tenant_id),
                    ("DEFENDER_CLIENT_ID", client_id),
                )
                if not value
            ]
            raise SettingsError([f"{name}: required by {uses}" for name in missing])
        return _app_registration(
            tenant_id, client_id, certificate_path, secret, cloud.authority_host
        )

    identity_id = settings.defender_managed_identity_client_id
    if identity_id:
        return CredentialKind.USER_ASSIGNED_IDENTITY, lambda: ManagedIdentityCredential(
            client_id=identity_id
        )
    return CredentialKind.SYSTEM_ASSIGNED_IDENTITY, ManagedIdentityCredential


def _app_registration(
    tenant_id: str,
    client_id: str,
    certificate_path: str | None,
    secret: str | None,
    authority: str,
) -> tuple[CredentialKind, Callable[[], TokenCredential]]:
    # A certificate wins over a secret: it cannot leak through an app setting.
    if certificate_path:
        path = certificate_path
        return CredentialKind.CLIENT_CERTIFICATE, lambda: CertificateCredential(
            tenant_id, client_id, path, authority=authority
        )

    assert secret is not None
    value = secret
    return CredentialKind.CLIENT_SECRET, lambda: ClientSecretCredential(
        tenant_id, client_id, value, authority=authority
    )


@dataclass(frozen=True, slots=True)
class RequiredPermission:
    """An application permission the playbook needs, and what it is needed for.

    Any one of ``accepted`` satisfies it; ``accepted[0]`` is the one to grant.
    """

    accepted: tuple[str, ...]
    needed_for: str

    @property
    def label(self) -> str:
        """How to name it to an administrator: ``A (or B)``."""
        first, *others = self.accepted
        return first + "".join(f" (or {other})" for other in others)


# StopAndQuarantineFile needs BOTH Machine.StopAndQuarantine and a machine read
# permission, although its page reads "one of" (shared/defender-api.md, 1.3).
REQUIRED_PERMISSIONS: tuple[RequiredPermission, ...] = (
    RequiredPermission(("Machine.StopAndQuarantine",), "StopAndQuarantineFile"),
    RequiredPermission(
        ("Machine.Read.All", "Machine.ReadWrite.All"),
        "StopAndQuarantineFile, machines, machine actions",
    ),
    RequiredPermission(("File.Read.All",), "file profiles"),
    RequiredPermission(("Alert.Read.All", "Alert.ReadWrite.All"), "alerts"),
)

_AV_INFO_PERMISSION = "Machine.Read.All"


@dataclass(frozen=True, slots=True)
class PermissionReport:
    """What a token's ``roles`` claim grants, measured against what is needed.

    ``decoded`` is False when the token could not be read; then ``granted`` and
    ``missing`` are empty and ``notes`` says why.
    """

    decoded: bool
    granted: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    audience: str | None = None

    @property
    def is_complete(self) -> bool:
        """Whether every needed permission was seen in the token."""
        return self.decoded and not self.missing


def check_permissions(
    token: str, *, expected_audience: str | None = None
) -> PermissionReport:
    """Compare the token's application roles with what the playbook calls need.

    Never raises and never blocks start-up: a gap is logged as one warning that
    names every permission to grant. The signature is not checked; the API does.
    """
    claims = decode_token_claims(token)
    if claims is None:
        report = PermissionReport(
            decoded=False,
            notes=("the token is not a readable JWT; permissions were not checked",),
        )
        logger.warning("defender.permissions_unknown", extra={"notes": report.notes})
        return report

    roles = claims.get("roles")
    granted = tuple(
        sorted(role for role in roles if isinstance(role, str))
        if isinstance(roles, list)
        else ()
    )
    audience = claims.get("aud") if isinstance(claims.get("aud"), str) else None

    missing = tuple(
        permission.label
        for permission in REQUIRED_PERMISSIONS
        if not set(permission.accepted) & set(granted)
    )
    notes = _permission_notes(granted, audience, expected_audience)
    report = PermissionReport(
        decoded=True, granted=granted, missing=missing, notes=notes, audience=audience
    )

    if missing:
        logger.warning(
            "defender.permissions_missing",
            extra={"missing": list(missing), "granted": list(granted)},
        )
    return report


def _permission_notes(
    granted: tuple[str, ...], audience: str | None, expected_audience: str | None
) -> tuple[str, ...]:
    notes: list[str] = []
    if _AV_INFO_PERMISSION not in granted:
        notes.append(
            "the antivirus-mode report (deviceavinfo) documents Machine.Read.All; "
            "without it the device antivirus mode may stay unknown"
        )
    # Only a URL audience can be compared: v2 tokens name the resource by its
    # application id instead, which says nothing about the host it was asked for.
    if (
        expected_audience
        and audience is not None
        and audience.startswith("https://")
        and audience.rstrip("/") != expected_audience
    ):
        notes.append(
            f"the token audience {audience} differs from {expected_audience}; "
            "Defender answers 403 to a token for another audience"
        )
    return tuple(notes)


def decode_token_claims(token: str) -> Mapping[str, Any] | None:
    """The payload of a JWT as a mapping, or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None

    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None

    return claims if isinstance(claims, dict) else None
