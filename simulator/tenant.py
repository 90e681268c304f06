"""The seeded tenant: devices, files, which file was seen where, and alerts.

A tenant is read-only data that the API answers from. It is written in JSON with the
field names Defender itself uses (``computerDnsName``, ``osPlatform``, ``avMode``...)
so that a seed reads like the API's own answers; ``docs/simulator.md`` has the schema.
What changes while the simulator runs (machine actions, indicators, a device's
health) lives in ``simulator.state``, not here.
"""

from __future__ import annotations

__all__ = [
    "AV_MODES",
    "Alert",
    "Device",
    "Evidence",
    "FileRecord",
    "Observation",
    "Tenant",
    "TenantError",
    "load_tenant",
]

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from simulator.clock import format_moment

_K = TypeVar("_K")
_V = TypeVar("_V")
_R = TypeVar("_R")

# The string-typed integers of deviceavinfo's avMode, per shared/defender-api.md
# section 5: "" and "3" Other, "0" Active, "1" Passive, "2" Disabled, "4" EDRBlocked,
# "5" PassiveAudit.
AV_MODES = ("", "0", "1", "2", "3", "4", "5")

_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class TenantError(ValueError):
    """A tenant seed that cannot be used; the message names the field at fault."""


@dataclass(frozen=True, slots=True)
class Device:
    """One onboarded device, with the facts the API reports about it."""

    id: str
    computer_dns_name: str
    os_platform: str
    os_build: int | None = None
    version: str | None = None
    health_status: str = "Active"
    onboarding_status: str = "Onboarded"
    av_mode: str = "0"
    defender_av_status: str = "Updated"
    machine_tags: tuple[str, ...] = ()
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    last_ip_address: str | None = None
    os_architecture: str = "64-bit"
    rbac_group_name: str | None = None

    @property
    def is_windows(self) -> bool:
        return self.os_platform.lower().startswith("windows")

    @property
    def is_active(self) -> bool:
        """Whether the device would pick up a machine action now."""
        return self.health_status.lower() == "active"

    @classmethod
    def from_json(cls, data: object, where: str) -> Device:
        reader = _Reader(data, where)
        av_mode = reader.text("avMode", default="0")
        if av_mode not in AV_MODES:
            raise TenantError(
                f"{where}.avMode must be one of {AV_MODES}, not {av_mode!r}"
            )

        record = cls(
            id=reader.hex40("id"),
            computer_dns_name=reader.required_text("computerDnsName"),
            os_platform=reader.required_text("osPlatform"),
            os_build=reader.integer("osBuild"),
            version=reader.optional_text("version"),
            health_status=reader.text("healthStatus", default="Active"),
            onboarding_status=reader.text("onboardingStatus", default="Onboarded"),
            av_mode=av_mode,
            defender_av_status=reader.text("defenderAvStatus", default="Updated"),
            machine_tags=reader.texts("machineTags"),
            first_seen=reader.moment("firstSeen"),
            last_seen=reader.moment("lastSeen"),
            last_ip_address=reader.optional_text("lastIpAddress"),
            os_architecture=reader.text("osArchitecture", default="64-bit"),
            rbac_group_name=reader.optional_text("rbacGroupName"),
        )
        reader.done()
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "computerDnsName": self.computer_dns_name,
            "osPlatform": self.os_platform,
            "osBuild": self.os_build,
            "version": self.version,
            "healthStatus": self.health_status,
            "onboardingStatus": self.onboarding_status,
            "avMode": self.av_mode,
            "defenderAvStatus": self.defender_av_status,
            "machineTags": list(self.machine_tags),
            "firstSeen": _moment_json(self.first_seen),
            "lastSeen": _moment_json(self.last_seen),
            "lastIpAddress": self.last_ip_address,
            "osArchitecture": self.os_architecture,
            "rbacGroupName": self.rbac_group_name,
        }


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file the tenant knows, with its signature facts."""

    sha1: str
    sha256: str | None = None
    file_name: str | None = None
    size: int | None = None
    file_type: str | None = None
    is_pe_file: bool = True
    file_publisher: str | None = None
    file_product_name: str | None = None
    signer: str | None = None
    issuer: str | None = None
    signer_hash: str | None = None
    is_valid_certificate: bool = False
    global_prevalence: int | None = None
    determination_type: str | None = None
    determination_value: str | None = None

    @classmethod
    def from_json(cls, data: object, where: str) -> FileRecord:
        reader = _Reader(data, where)
        record = cls(
            sha1=reader.hex40("sha1"),
            sha256=reader.hex64("sha256"),
            file_name=reader.optional_text("fileName"),
            size=reader.integer("size"),
            file_type=reader.optional_text("fileType"),
            is_pe_file=reader.flag("isPeFile", default=True),
            file_publisher=reader.optional_text("filePublisher"),
            file_product_name=reader.optional_text("fileProductName"),
            signer=reader.optional_text("signer"),
            issuer=reader.optional_text("issuer"),
            signer_hash=reader.optional_text("signerHash"),
            is_valid_certificate=reader.flag("isValidCertificate", default=False),
            global_prevalence=reader.integer("globalPrevalence"),
            determination_type=reader.optional_text("determinationType"),
            determination_value=reader.optional_text("determinationValue"),
        )
        reader.done()
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "sha1": self.sha1,
            "sha256": self.sha256,
            "fileName": self.file_name,
            "size": self.size,
            "fileType": self.file_type,
            "isPeFile": self.is_pe_file,
            "filePublisher": self.file_publisher,
            "fileProductName": self.file_product_name,
            "signer": self.signer,
            "issuer": self.issuer,
            "signerHash": self.signer_hash,
            "isValidCertificate": self.is_valid_certificate,
            "globalPrevalence": self.global_prevalence,
            "determinationType": self.determination_type,
            "determinationValue": self.determination_value,
        }


@dataclass(frozen=True, slots=True)
class Observation:
    """A file seen on a device: the precondition of stopping it there."""

    machine_id: str
    sha1: str
    file_path: str | None = None

    @classmethod
    def from_json(cls, data: object, where: str) -> Observation:
        reader = _Reader(data, where)
        record = cls(
            machine_id=reader.hex40("machineId"),
            sha1=reader.hex40("sha1"),
            file_path=reader.optional_text("filePath"),
        )
        reader.done()
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "machineId": self.machine_id,
            "sha1": self.sha1,
            "filePath": self.file_path,
        }


@dataclass(frozen=True, slots=True)
class Evidence:
    """One entity an alert names: a file, a process (with its image file) or a user."""

    entity_type: str
    sha1: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    file_path: str | None = None
    process_id: int | None = None
    process_command_line: str | None = None
    account_name: str | None = None
    domain_name: str | None = None
    detection_status: str | None = None

    @classmethod
    def from_json(cls, data: object, where: str) -> Evidence:
        reader = _Reader(data, where)
        record = cls(
            entity_type=reader.required_text("entityType"),
            sha1=reader.optional_hex40("sha1"),
            sha256=reader.hex64("sha256"),
            file_name=reader.optional_text("fileName"),
            file_path=reader.optional_text("filePath"),
            process_id=reader.integer("processId"),
            process_command_line=reader.optional_text("processCommandLine"),
            account_name=reader.optional_text("accountName"),
            domain_name=reader.optional_text("domainName"),
            detection_status=reader.optional_text("detectionStatus"),
        )
        reader.done()
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "entityType": self.entity_type,
            "sha1": self.sha1,
            "sha256": self.sha256,
            "fileName": self.file_name,
            "filePath": self.file_path,
            "processId": self.process_id,
            "processCommandLine": self.process_command_line,
            "accountName": self.account_name,
            "domainName": self.domain_name,
            "detectionStatus": self.detection_status,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    """One Defender for Endpoint alert on one device, with its evidence."""

    id: str
    title: str
    machine_id: str
    created: datetime
    severity: str = "Medium"
    status: str = "New"
    category: str | None = None
    detection_source: str = "WindowsDefenderAtp"
    threat_family_name: str | None = None
    evidence: tuple[Evidence, ...] = ()

    @classmethod
    def from_json(cls, data: object, where: str) -> Alert:
        reader = _Reader(data, where)
        created = reader.moment("alertCreationTime")
        if created is None:
            raise TenantError(f"{where}.alertCreationTime is required")

        record = cls(
            id=reader.required_text("id"),
            title=reader.required_text("title"),
            machine_id=reader.hex40("machineId"),
            created=created,
            severity=reader.text("severity", default="Medium"),
            status=reader.text("status", default="New"),
            category=reader.optional_text("category"),
            detection_source=reader.text(
                "detectionSource", default="WindowsDefenderAtp"
            ),
            threat_family_name=reader.optional_text("threatFamilyName"),
            evidence=tuple(
                Evidence.from_json(item, f"{where}.evidence[{index}]")
                for index, item in enumerate(reader.items("evidence"))
            ),
        )
        reader.done()
        return record

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "machineId": self.machine_id,
            "alertCreationTime": _moment_json(self.created),
            "severity": self.severity,
            "status": self.status,
            "category": self.category,
            "detectionSource": self.detection_source,
            "threatFamilyName": self.threat_family_name,
            "evidence": [item.to_json() for item in self.evidence],
        }


@dataclass(frozen=True, slots=True)
class Tenant:
    """Everything the simulated Defender tenant knows before the first call.

    ``trusted_publishers`` are the signers whose validly signed files Defender
    refuses to stop, besides Microsoft's own (section 1.5 of the API notes: the rule
    is undocumented, so the seed states it).
    """

    name: str
    tenant_id: str
    devices: tuple[Device, ...] = ()
    files: tuple[FileRecord, ...] = ()
    observations: tuple[Observation, ...] = ()
    alerts: tuple[Alert, ...] = ()
    trusted_publishers: tuple[str, ...] = ()
    _devices: dict[str, Device] = field(init=False, repr=False, compare=False)
    _files: dict[str, FileRecord] = field(init=False, repr=False, compare=False)
    _seen: dict[tuple[str, str], Observation] = field(
        init=False, repr=False, compare=False
    )
    _alerts: dict[str, Alert] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        devices = _index((d.id, d) for d in self.devices)
        files = _index((f.sha1, f) for f in self.files)
        files_by_sha256 = _index((f.sha256, f) for f in self.files if f.sha256)
        seen = _index(((o.machine_id, o.sha1), o) for o in self.observations)
        alerts = _index((a.id, a) for a in self.alerts)

        for observation in self.observations:
            if observation.machine_id not in devices:
                raise TenantError(
                    f"observation names unknown device {observation.machine_id}"
                )
            if observation.sha1 not in files:
                raise TenantError(f"observation names unknown file {observation.sha1}")
        for alert in self.alerts:
            if alert.machine_id not in devices:
                raise TenantError(f"alert {alert.id} names unknown device")

        object.__setattr__(self, "_devices", devices)
        object.__setattr__(self, "_files", files | files_by_sha256)
        object.__setattr__(self, "_seen", seen)
        object.__setattr__(self, "_alerts", alerts)

    def device(self, machine_id: str) -> Device | None:
        """The device with this id (any letter case), or None."""
        return self._devices.get(machine_id.lower())

    def device_by_name(self, computer_dns_name: str) -> Device | None:
        """The device with this computer name (any letter case), or None."""
        wanted = computer_dns_name.lower()
        for device in self.devices:
            if device.computer_dns_name.lower() == wanted:
                return device
        return None

    def file(self, file_hash: str) -> FileRecord | None:
        """The file with this SHA-1 or SHA-256 (any letter case), or None."""
        return self._files.get(file_hash.lower())

    def observation(self, machine_id: str, sha1: str) -> Observation | None:
        """How the file was seen on the device, or None if it never was."""
        return self._seen.get((machine_id.lower(), sha1.lower()))

    def alert(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tenant:
        """Read a tenant seed; raises TenantError naming the first bad field."""
        reader = _Reader(data, "tenant")
        tenant_id = reader.required_text("tenantId")
        if not _GUID.match(tenant_id):
            raise TenantError(f"tenant.tenantId must be a GUID, not {tenant_id!r}")

        record = cls(
            name=reader.required_text("name"),
            tenant_id=tenant_id.lower(),
            trusted_publishers=reader.texts("trustedPublishers"),
            devices=_records(reader, "devices", Device.from_json),
            files=_records(reader, "files", FileRecord.from_json),
            observations=_records(reader, "observations", Observation.from_json),
            alerts=_records(reader, "alerts", Alert.from_json),
        )
        reader.done()
        return record

    def to_json(self) -> dict[str, Any]:
        """The seed that ``from_json`` reads back into an equal tenant."""
        return {
            "name": self.name,
            "tenantId": self.tenant_id,
            "trustedPublishers": list(self.trusted_publishers),
            "devices": [device.to_json() for device in self.devices],
            "files": [record.to_json() for record in self.files],
            "observations": [seen.to_json() for seen in self.observations],
            "alerts": [alert.to_json() for alert in self.alerts],
        }


def load_tenant(path: str | Path) -> Tenant:
    """Read a tenant seed from a JSON file; raises TenantError if it is unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TenantError(f"cannot read tenant file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise TenantError(f"tenant file {path} is not JSON: {exc}") from exc

    if not isinstance(data, dict):
        raise TenantError(f"tenant file {path} must hold a JSON object")
    return Tenant.from_json(data)


def _index(pairs: Iterable[tuple[_K, _V]]) -> dict[_K, _V]:
    index: dict[_K, _V] = {}
    for key, value in pairs:
        if key in index:
            raise TenantError(f"duplicate entry {key}")
        index[key] = value
    return index


def _records(
    reader: _Reader, key: str, parse: Callable[[object, str], _R]
) -> tuple[_R, ...]:
    return tuple(
        parse(item, f"tenant.{key}[{index}]")
        for index, item in enumerate(reader.items(key))
    )


def _moment_json(moment: datetime | None) -> str | None:
    return None if moment is None else format_moment(moment)


class _Reader:
    """Typed reads from one JSON object, each failure naming the field's path.

    Every read removes its key, so ``done`` can refuse keys no one asked for: a
    misspelt field in a seed is an error, not a silent default.
    """

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise TenantError(f"{where} must be a JSON object")
        self._left = dict(data)
        self._where = where

    def done(self) -> None:
        """Refuse any key that no read asked for."""
        if self._left:
            unknown = ", ".join(sorted(self._left))
            raise TenantError(f"{self._where} has unknown fields: {unknown}")

    def _take(self, key: str) -> object:
        return self._left.pop(key, None)

    def _fail(self, key: str, wanted: str, value: object) -> TenantError:
        return TenantError(f"{self._where}.{key} must be {wanted}, not {value!r}")

    def optional_text(self, key: str) -> str | None:
        value = self._take(key)
        if value is None or isinstance(value, str):
            return value
        raise self._fail(key, "a string", value)

    def text(self, key: str, *, default: str) -> str:
        value = self.optional_text(key)
        return default if value is None else value

    def required_text(self, key: str) -> str:
        value = self.optional_text(key)
        if not value:
            raise TenantError(f"{self._where}.{key} is required")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._take(key)
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise self._fail(key, "a list of strings", value)

    def items(self, key: str) -> list[object]:
        value = self._take(key)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        raise self._fail(key, "a list", value)

    def integer(self, key: str) -> int | None:
        value = self._take(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise self._fail(key, "an integer", value)

    def flag(self, key: str, *, default: bool) -> bool:
        value = self._take(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        raise self._fail(key, "true or false", value)

    def optional_hex40(self, key: str) -> str | None:
        value = self._take(key)
        if value is None:
            return None
        if isinstance(value, str) and _HEX40.match(value):
            return value.lower()
        raise self._fail(key, "40 hexadecimal characters", value)

    def hex40(self, key: str) -> str:
        value = self.optional_hex40(key)
        if value is None:
            raise TenantError(f"{self._where}.{key} is required")
        return value

    def hex64(self, key: str) -> str | None:
        value = self._take(key)
        if value is None:
            return None
        if isinstance(value, str) and _HEX64.match(value):
            return value.lower()
        raise self._fail(key, "64 hexadecimal characters", value)

    def moment(self, key: str) -> datetime | None:
        value = self._take(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        raise self._fail(key, "an ISO 8601 time", value)
