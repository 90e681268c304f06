"""Credential choice, the fixed-token guard, and the permission self-check."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any, ClassVar

import pytest

from shared import credentials
from shared.clouds import resolve_cloud
from shared.credentials import (
    CredentialKind,
    IdentityTokenProvider,
    StaticTokenProvider,
    build_token_provider,
    check_permissions,
    decode_token_claims,
)
from shared.errors import SettingsError
from shared.settings import Settings

ALL_ROLES = [
    "Machine.StopAndQuarantine",
    "Machine.Read.All",
    "File.Read.All",
    "Alert.Read.All",
]


def make_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.signature"


class RecordingCredential:
    """Stands in for an azure-identity credential; records how it was built."""

    built: ClassVar[list[RecordingCredential]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.scopes: list[tuple[str, ...]] = []
        RecordingCredential.built.append(self)

    def get_token(self, *scopes: str, **_: Any) -> Any:
        self.scopes.append(scopes)
        return type("AccessToken", (), {"token": f"token-{len(self.built)}"})()


@pytest.fixture(name="recording")
def _recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingCredential]:
    RecordingCredential.built = []
    for name in (
        "CertificateCredential",
        "ClientSecretCredential",
        "ManagedIdentityCredential",
    ):
        monkeypatch.setattr(credentials, name, RecordingCredential)
    return RecordingCredential


def settings_with(**values: str) -> Settings:
    return Settings.from_env(values)


def test_fixed_token_is_accepted_for_loopback_host() -> None:
    settings = settings_with(
        DEFENDER_TOKEN="local-token", DEFENDER_API_URL="http://127.0.0.1:8650"
    )
    cloud = resolve_cloud(settings.defender_cloud, settings.defender_api_url)

    provider = build_token_provider(settings, cloud)

    assert provider.kind is CredentialKind.STATIC_TOKEN
    assert provider.get_token() == "local-token"
    assert provider.get_token(force_refresh=True) == "local-token"


@pytest.mark.parametrize(
    "api_url", [None, "https://proxy.example.com", "http://localhost.example.com"]
)
def test_fixed_token_is_refused_for_any_other_host(api_url: str | None) -> None:
    settings = Settings(defender_token="local-token", defender_api_url=api_url)
    cloud = resolve_cloud("global", api_url)

    with pytest.raises(SettingsError, match=r"DEFENDER_TOKEN.*loopback"):
        build_token_provider(settings, cloud)


def test_fixed_token_never_appears_in_the_provider_repr() -> None:
    provider = StaticTokenProvider("very-secret-value")

    assert "very-secret-value" not in repr(provider)


def test_certificate_wins_over_secret_and_uses_cloud_authority(
    recording: type[RecordingCredential],
) -> None:
    settings = settings_with(
        DEFENDER_CLOUD="gcc-high",
        DEFENDER_TENANT_ID="tenant",
        DEFENDER_CLIENT_ID="client",
        DEFENDER_CLIENT_SECRET="secret",
        DEFENDER_CLIENT_CERTIFICATE_PATH="app.pem",
    )
    cloud = resolve_cloud("gcc-high")

    provider = build_token_provider(settings, cloud)
    token = provider.get_token()

    assert provider.kind is CredentialKind.CLIENT_CERTIFICATE
    assert token == "token-1"
    (built,) = recording.built
    assert built.args == ("tenant", "client", "app.pem")
    assert built.kwargs == {"authority": "login.microsoftonline.us"}
    assert built.scopes == [(cloud.scope,)]


def test_secret_builds_client_secret_credential(
    recording: type[RecordingCredential],
) -> None:
    settings = settings_with(
        DEFENDER_TENANT_ID="tenant",
        DEFENDER_CLIENT_ID="client",
        DEFENDER_CLIENT_SECRET="secret",
    )

    provider = build_token_provider(settings, resolve_cloud("global"))
    provider.get_token()

    assert provider.kind is CredentialKind.CLIENT_SECRET
    (built,) = recording.built
    assert built.args == ("tenant", "client", "secret")
    assert built.kwargs == {"authority": "login.microsoftonline.com"}


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"DEFENDER_CLIENT_SECRET": "s"}, ["DEFENDER_TENANT_ID", "DEFENDER_CLIENT_ID"]),
        (
            {"DEFENDER_CLIENT_SECRET": "s", "DEFENDER_TENANT_ID": "t"},
            ["DEFENDER_CLIENT_ID"],
        ),
        (
            {"DEFENDER_CLIENT_CERTIFICATE_PATH": "a.pem", "DEFENDER_CLIENT_ID": "c"},
            ["DEFENDER_TENANT_ID"],
        ),
    ],
)
def test_app_registration_without_ids_names_what_is_missing(
    values: dict[str, str], missing: list[str]
) -> None:
    settings = settings_with(**values)

    with pytest.raises(SettingsError) as raised:
        build_token_provider(settings, resolve_cloud("global"))

    assert [problem.split(":")[0] for problem in raised.value.problems] == missing


def test_user_assigned_identity_when_its_client_id_is_set(
    recording: type[RecordingCredential],
) -> None:
    settings = settings_with(DEFENDER_MANAGED_IDENTITY_CLIENT_ID="identity-client")

    provider = build_token_provider(settings, resolve_cloud("global"))
    provider.get_token()

    assert provider.kind is CredentialKind.USER_ASSIGNED_IDENTITY
    assert recording.built[0].kwargs == {"client_id": "identity-client"}


def test_system_assigned_identity_when_nothing_else_is_set(
    recording: type[RecordingCredential],
) -> None:
    provider = build_token_provider(Settings(), resolve_cloud("global"))
    provider.get_token()

    assert provider.kind is CredentialKind.SYSTEM_ASSIGNED_IDENTITY
    assert recording.built[0].kwargs == {}


def test_credential_choice_is_logged_with_ids_and_never_the_secret(
    recording: type[RecordingCredential], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with(
        DEFENDER_TENANT_ID="tenant-id",
        DEFENDER_CLIENT_ID="client-id",
        DEFENDER_CLIENT_SECRET="do-not-log-me",
    )
    caplog.set_level(logging.INFO, logger="shared.credentials")

    build_token_provider(settings, resolve_cloud("eu"))

    (record,) = [r for r in caplog.records if r.msg == "defender.credential"]
    assert record.__dict__["credential_kind"] == "client-secret"
    assert record.__dict__["tenant_id"] == "tenant-id"
    assert record.__dict__["client_id"] == "client-id"
    assert record.__dict__["api_host"] == "eu.api.security.microsoft.com"
    assert "do-not-log-me" not in str(record.__dict__)


def test_forced_refresh_builds_a_new_credential(
    recording: type[RecordingCredential],
) -> None:
    provider = IdentityTokenProvider(
        kind=CredentialKind.CLIENT_SECRET,
        factory=RecordingCredential,
        scope="scope/.default",
    )

    first = provider.get_token()
    again = provider.get_token()
    refreshed = provider.get_token(force_refresh=True)

    assert (first, again, refreshed) == ("token-1", "token-1", "token-2")
    assert len(recording.built) == 2


def test_complete_roles_give_a_complete_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_jwt(
        {"roles": ALL_ROLES, "aud": "https://api.securitycenter.microsoft.com"}
    )

    report = check_permissions(
        token, expected_audience="https://api.securitycenter.microsoft.com"
    )

    assert report.decoded
    assert report.is_complete
    assert report.missing == ()
    assert report.granted == tuple(sorted(ALL_ROLES))
    assert report.notes == ()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_stop_and_quarantine_alone_misses_the_machine_read_permission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_jwt({"roles": ["Machine.StopAndQuarantine"]})

    report = check_permissions(token)

    assert report.missing == (
        "Machine.Read.All (or Machine.ReadWrite.All)",
        "File.Read.All",
        "Alert.Read.All (or Alert.ReadWrite.All)",
    )
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.msg == "defender.permissions_missing"
    assert warning.__dict__["missing"] == list(report.missing)


def test_read_write_permissions_satisfy_but_note_the_antivirus_report() -> None:
    token = make_jwt(
        {
            "roles": [
                "Machine.StopAndQuarantine",
                "Machine.ReadWrite.All",
                "File.Read.All",
                "Alert.ReadWrite.All",
            ]
        }
    )

    report = check_permissions(token)

    assert report.is_complete
    assert any("deviceavinfo" in note for note in report.notes)


def test_token_for_another_audience_is_noted() -> None:
    token = make_jwt({"roles": ALL_ROLES, "aud": "https://api.security.microsoft.com"})

    report = check_permissions(
        token, expected_audience="https://api.securitycenter.microsoft.com"
    )

    assert report.audience == "https://api.security.microsoft.com"
    assert any("403" in note for note in report.notes)


@pytest.mark.parametrize(
    "token",
    [
        "local-development-token",
        "a.b.c",
        "a." + base64.urlsafe_b64encode(b"[1, 2]").decode() + ".c",
        "a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c",
        "",
    ],
)
def test_undecodable_token_gives_a_report_saying_so(
    token: str, caplog: pytest.LogCaptureFixture
) -> None:
    report = check_permissions(token)

    assert not report.decoded
    assert not report.is_complete
    assert report.missing == ()
    assert "not a readable JWT" in report.notes[0]
    assert [r.msg for r in caplog.records] == ["defender.permissions_unknown"]


def test_token_without_roles_misses_everything() -> None:
    report = check_permissions(make_jwt({"aud": "x"}))

    assert report.decoded
    assert len(report.missing) == 4


def test_decode_token_claims_reads_unpadded_payload() -> None:
    claims = decode_token_claims(make_jwt({"roles": ["A"], "tid": "t"}))

    assert claims == {"roles": ["A"], "tid": "t"}
