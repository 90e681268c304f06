"""The cloud table: hosts, authorities and scopes travel together."""

from __future__ import annotations

import pytest

from shared.clouds import CLOUDS, is_loopback_url, resolve_cloud
from shared.settings import CLOUDS as SETTING_CLOUDS

COMMERCIAL_SCOPE = "https://api.securitycenter.microsoft.com/.default"


def test_table_covers_exactly_the_clouds_the_setting_accepts() -> None:
    assert sorted(CLOUDS) == sorted(SETTING_CLOUDS)


def test_global_cloud_uses_security_host_with_legacy_audience() -> None:
    cloud = resolve_cloud("global")

    assert cloud.api_url == "https://api.security.microsoft.com"
    assert cloud.authority_host == "login.microsoftonline.com"
    assert cloud.scope == COMMERCIAL_SCOPE
    assert cloud.scope_confirmed


@pytest.mark.parametrize("geo", ["us", "eu", "uk", "au", "swa", "ina", "aea"])
def test_geo_cloud_uses_geo_host_and_commercial_scope(geo: str) -> None:
    cloud = resolve_cloud(geo)

    assert cloud.api_url == f"https://{geo}.api.security.microsoft.com"
    assert cloud.scope == COMMERCIAL_SCOPE
    assert cloud.authority_host == "login.microsoftonline.com"


def test_gcc_signs_in_commercially_and_calls_gcc_host() -> None:
    cloud = resolve_cloud("gcc")

    assert cloud.api_url == "https://api-gcc.securitycenter.microsoft.us"
    assert cloud.authority_host == "login.microsoftonline.com"
    assert cloud.scope.startswith("https://api-gcc.securitycenter.microsoft.us")
    assert not cloud.scope_confirmed


@pytest.mark.parametrize("name", ["gcc-high", "dod"])
def test_gcc_high_and_dod_sign_in_on_us_government_authority(name: str) -> None:
    cloud = resolve_cloud(name)

    assert cloud.api_url == "https://api-gov.securitycenter.microsoft.us"
    assert cloud.authority_host == "login.microsoftonline.us"
    assert not cloud.scope_confirmed


def test_api_url_override_replaces_host_only() -> None:
    cloud = resolve_cloud("gcc-high", "http://127.0.0.1:8650/")

    assert cloud.api_url == "http://127.0.0.1:8650"
    assert cloud.api_host == "127.0.0.1"
    assert cloud.authority_host == "login.microsoftonline.us"
    assert cloud.scope == resolve_cloud("gcc-high").scope


def test_unknown_cloud_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="gcc-high"):
        resolve_cloud("mars")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8650",
        "http://127.10.0.3",
        "http://localhost:1234",
        "http://LOCALHOST",
        "http://[::1]:8650",
    ],
)
def test_loopback_urls_are_recognised(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.security.microsoft.com",
        "http://localhost.example.com",
        "http://128.0.0.1",
        "http://10.0.0.1",
        "http://[::2]",
        "not a url",
        "",
    ],
)
def test_other_urls_are_not_loopback(url: str) -> None:
    assert not is_loopback_url(url)
