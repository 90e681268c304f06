"""The Defender clouds: for each, where the API lives, where to sign in, what scope.

The three travel together because a token for the wrong audience is refused with
403 even when the host is right (shared/defender-api.md, sections 1.6 and 9).
``DEFENDER_API_URL`` replaces the API host only; the sign-in authority and scope
still follow ``DEFENDER_CLOUD``.
"""

from __future__ import annotations

__all__ = [
    "CLOUDS",
    "Cloud",
    "is_loopback_url",
    "resolve_cloud",
]

import ipaddress
from dataclasses import dataclass, replace
from types import MappingProxyType
from urllib.parse import urlsplit

_PUBLIC_AUTHORITY = "login.microsoftonline.com"
_US_GOV_AUTHORITY = "login.microsoftonline.us"

# The commercial token audience is the legacy securitycenter resource, also for
# api.security.microsoft.com and its geo hosts: the MDE app-token page warns that
# another audience gets 403 (shared/defender-api.md, section 9).
_COMMERCIAL_SCOPE = "https://api.securitycenter.microsoft.com/.default"

_GEOS = ("us", "eu", "uk", "au", "swa", "ina", "aea")


@dataclass(frozen=True, slots=True)
class Cloud:
    """One Defender cloud: API base URL, sign-in authority host and token scope.

    ``scope_confirmed`` is False where Microsoft documents no scope and the value
    is taken from public integrations; sign-in failures there should suspect it.
    """

    name: str
    api_url: str
    authority_host: str
    scope: str
    scope_confirmed: bool = True

    @property
    def api_host(self) -> str:
        """The host name of ``api_url``, without scheme or port."""
        return urlsplit(self.api_url).hostname or ""


def _commercial(name: str, host: str) -> Cloud:
    return Cloud(name, f"https://{host}", _PUBLIC_AUTHORITY, _COMMERCIAL_SCOPE)


_TABLE: dict[str, Cloud] = {
    "global": _commercial("global", "api.security.microsoft.com"),
    **{geo: _commercial(geo, f"{geo}.api.security.microsoft.com") for geo in _GEOS},
    # US Government hosts and authorities are documented (defender-endpoint/gov.md);
    # the scopes are not. GCC uses its own API host as the audience, as community
    # scripts do; GCC High and DoD follow the same pattern on api-gov, which is an
    # inference (one public script uses api.securitycenter.microsoft.us instead).
    # Both are UNCONFIRMED: see shared/defender-api.md, section 9.
    "gcc": Cloud(
        "gcc",
        "https://api-gcc.securitycenter.microsoft.us",
        _PUBLIC_AUTHORITY,
        "https://api-gcc.securitycenter.microsoft.us/.default",
        scope_confirmed=False,
    ),
    "gcc-high": Cloud(
        "gcc-high",
        "https://api-gov.securitycenter.microsoft.us",
        _US_GOV_AUTHORITY,
        "https://api-gov.securitycenter.microsoft.us/.default",
        scope_confirmed=False,
    ),
    "dod": Cloud(
        "dod",
        "https://api-gov.securitycenter.microsoft.us",
        _US_GOV_AUTHORITY,
        "https://api-gov.securitycenter.microsoft.us/.default",
        scope_confirmed=False,
    ),
}

CLOUDS = MappingProxyType(_TABLE)


def resolve_cloud(name: str, api_url: str | None = None) -> Cloud:
    """The cloud called ``name``, with its API URL replaced by ``api_url`` if given.

    Raises:
        ValueError: ``name`` is not a known cloud.
    """
    try:
        cloud = CLOUDS[name.lower()]
    except KeyError:
        known = ", ".join(CLOUDS)
        raise ValueError(
            f"unknown Defender cloud {name!r}; expected one of {known}"
        ) from None

    if api_url:
        cloud = replace(cloud, api_url=api_url.rstrip("/"))
    return cloud


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname
    if not host:
        return False
    if host == "localhost":
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
