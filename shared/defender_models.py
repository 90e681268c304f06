"""Machines, files, antivirus reports and alerts read from Defender API answers.

Defender's wire names appear only here and in the client. Live answers differ from
the documented ones (shared/defender-api.md, sections 2 to 5, and 11.6), so each
parser accepts the variants seen: ``lastUpdateDateTimeUtc`` and ``lastUpdateTimeUtc``;
``onboardingStatus`` and ``onboardingstatus``; PascalCase and lower-case enum values;
``avMode`` as a string or a number; ``osBuild`` null. An unknown enum value is kept
as Defender spelled it, never a crash. The tolerant field readers (``as_text`` and
friends) are shared with ``shared.machine_actions``.
"""

from __future__ import annotations

__all__ = [
    "AlertDocument",
    "AvInfo",
    "FileProfile",
    "Machine",
    "UnexpectedShapeError",
    "as_boolean",
    "as_integer",
    "as_lower",
    "as_object",
    "as_text",
    "as_timestamp",
    "first_present",
    "parse_alert_document",
    "parse_av_info",
    "parse_file_profile",
    "parse_machine",
    "required_text",
]

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from shared.targets import DeviceFacts, FileFacts, normalise_sha1


class UnexpectedShapeError(ValueError):
    """An answer lacks a field the playbook cannot work without."""


@dataclass(frozen=True, slots=True)
class AvInfo:
    """A device's antivirus state from the device health report (deviceavinfo).

    ``av_mode`` is Defender's string integer: "0" active, "1" passive, "2" disabled,
    "3" or "" other, "4" EDR blocked, "5" passive audit.
    """

    machine_id: str
    av_mode: str | None
    os_platform: str | None = None
    os_version: str | None = None
    os_kind: str | None = None
    computer_dns_name: str | None = None
    data_refreshed: datetime | None = None


@dataclass(frozen=True, slots=True)
class Machine:
    """A device as Defender's machine entity describes it."""

    id: str
    computer_dns_name: str | None = None
    os_platform: str | None = None
    os_build: int | None = None
    version: str | None = None
    os_version: str | None = None
    health_status: str | None = None
    onboarding_status: str | None = None
    defender_av_status: str | None = None
    machine_tags: tuple[str, ...] = ()
    last_seen: datetime | None = None

    def to_device_facts(self, av_info: AvInfo | None = None) -> DeviceFacts:
        """The policy's view of this device, with the antivirus mode merged in."""
        os_build = self.os_build
        if os_build is None and av_info is not None:
            # osBuild is often null on live machines; the health report's full
            # version (10.0.19044.1865) carries the same build number.
            os_build = _build_from_version(av_info.os_version)

        return DeviceFacts(
            device_id=self.id,
            os_platform=self.os_platform,
            os_build=os_build,
            os_version=self.version or self.os_version,
            health_status=self.health_status,
            onboarding_status=self.onboarding_status,
            av_mode=av_info.av_mode if av_info is not None else None,
            machine_tags=self.machine_tags,
            device_name=self.computer_dns_name,
            source="api",
        )


@dataclass(frozen=True, slots=True)
class FileProfile:
    """A file as Defender's file entity describes it."""

    sha1: str
    sha256: str | None = None
    signer: str | None = None
    issuer: str | None = None
    file_publisher: str | None = None
    file_product_name: str | None = None
    is_valid_certificate: bool | None = None
    signer_hash: str | None = None
    global_prevalence: int | None = None
    determination_type: str | None = None
    determination_value: str | None = None
    size: int | None = None
    is_pe_file: bool | None = None

    def to_file_facts(self) -> FileFacts:
        """The policy's view of this file's signature."""
        return FileFacts(
            sha1=self.sha1,
            signer=self.signer,
            issuer=self.issuer,
            file_publisher=self.file_publisher,
            is_valid_certificate=self.is_valid_certificate,
            source="api",
        )


@dataclass(frozen=True, slots=True)
class AlertDocument:
    """One alert as the API returned it; the alert-format parser reads ``document``."""

    id: str
    document: Mapping[str, Any]


_HEALTH_STATUSES = (
    "Active",
    "Inactive",
    "ImpairedCommunication",
    "NoSensorData",
    "NoSensorDataImpairedCommunication",
    "Unknown",
)
_ONBOARDING_STATUSES = (
    "Onboarded",
    "CanBeOnboarded",
    "Unsupported",
    "InsufficientInfo",
)


def parse_machine(document: object) -> Machine:
    """A machine from its JSON object."""
    fields = as_object(document, "machine")
    tags = fields.get("machineTags")

    return Machine(
        id=_required_id(fields, "id", "machine"),
        computer_dns_name=as_text(fields.get("computerDnsName")),
        os_platform=as_text(fields.get("osPlatform")),
        os_build=as_integer(fields.get("osBuild")),
        version=as_text(fields.get("version")),
        os_version=as_text(fields.get("osVersion")),
        health_status=_canonical(as_text(fields.get("healthStatus")), _HEALTH_STATUSES),
        onboarding_status=_canonical(
            as_text(first_present(fields, "onboardingStatus", "onboardingstatus")),
            _ONBOARDING_STATUSES,
        ),
        defender_av_status=as_text(fields.get("defenderAvStatus")),
        machine_tags=tuple(tag for tag in tags if isinstance(tag, str))
        if isinstance(tags, list)
        else (),
        last_seen=as_timestamp(fields.get("lastSeen")),
    )


def parse_av_info(document: object) -> AvInfo:
    """One row of the device health report."""
    fields = as_object(document, "device antivirus report row")

    return AvInfo(
        machine_id=_required_id(fields, "machineId", "device antivirus report row"),
        av_mode=_av_mode(fields.get("avMode")),
        os_platform=as_text(fields.get("osPlatform")),
        os_version=as_text(fields.get("osVersion")),
        os_kind=as_text(fields.get("osKind")),
        computer_dns_name=as_text(fields.get("computerDnsName")),
        data_refreshed=as_timestamp(fields.get("dataRefreshTimestamp")),
    )


def parse_file_profile(document: object) -> FileProfile:
    """A file from its JSON object."""
    fields = as_object(document, "file")

    return FileProfile(
        sha1=_required_id(fields, "sha1", "file"),
        sha256=as_lower(as_text(fields.get("sha256"))),
        signer=as_text(fields.get("signer")),
        issuer=as_text(fields.get("issuer")),
        file_publisher=as_text(fields.get("filePublisher")),
        file_product_name=as_text(fields.get("fileProductName")),
        is_valid_certificate=as_boolean(fields.get("isValidCertificate")),
        signer_hash=as_text(fields.get("signerHash")),
        global_prevalence=as_integer(fields.get("globalPrevalence")),
        determination_type=as_text(fields.get("determinationType")),
        determination_value=as_text(fields.get("determinationValue")),
        size=as_integer(fields.get("size")),
        is_pe_file=as_boolean(fields.get("isPeFile")),
    )


def parse_alert_document(document: object) -> AlertDocument:
    """An alert with its raw document, kept read-only for the format parser."""
    fields = as_object(document, "alert")

    return AlertDocument(
        id=required_text(fields, "id", "alert"),
        document=MappingProxyType(dict(fields)),
    )


def as_object(document: object, what: str) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise UnexpectedShapeError(f"the {what} is not a JSON object")
    return document


def required_text(fields: Mapping[str, Any], key: str, what: str) -> str:
    value = as_text(fields.get(key))
    if not value:
        raise UnexpectedShapeError(f"the {what} has no {key}")
    return value


def _required_id(fields: Mapping[str, Any], key: str, what: str) -> str:
    value = normalise_sha1(fields.get(key))
    if value is None:
        raise UnexpectedShapeError(f"the {what} has no 40-hex {key}")
    return value


def first_present(fields: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if fields.get(key) is not None:
            return fields[key]
    return None


def as_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def as_lower(value: str | None) -> str | None:
    return value.strip().lower() if value is not None else None


def as_integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def as_boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _av_mode(value: object) -> str | None:
    # Documented as a string integer ("0"); some answers carry a bare number.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return None


def _canonical(value: str | None, known: tuple[str, ...]) -> str | None:
    # The documentation spells some values in lower case ("onboarded") where live
    # answers use PascalCase; give the policy one spelling.
    if value is None:
        return None
    for candidate in known:
        if candidate.lower() == value.lower():
            return candidate
    return value


def as_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Some answers omit the zone; Defender's times are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_VERSION_BUILD = re.compile(r"^\d+\.\d+\.(\d+)")


def _build_from_version(version: str | None) -> int | None:
    match = _VERSION_BUILD.match(version or "")
    return int(match.group(1)) if match else None
