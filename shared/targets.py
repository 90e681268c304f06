"""What extraction yields: alerts, the targets they name, and rejected input.

A **target** is one (device id, file SHA-1) pair that an alert names: the unit of a
quarantine action, of deduplication and of every record. The same pair named by two
alerts is two ``Target`` values here (one per alert); the ledger merges them.

A **rejection** is input that could not be read (not JSON, an unknown shape, an id
that is not what it claims). It is a value, not an exception, so one bad record
never hides the good ones beside it.
"""

from __future__ import annotations

__all__ = [
    "Alert",
    "AlertFormat",
    "DeviceFacts",
    "EvidenceKind",
    "Extraction",
    "FileFacts",
    "Rejection",
    "Target",
    "is_sha1",
    "normalise_sha1",
]

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

_SHA1 = re.compile(r"[0-9a-fA-F]{40}")


def is_sha1(value: object) -> bool:
    """Whether ``value`` is 40 hexadecimal characters (a SHA-1 or a device id)."""
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    return isinstance(value, str) and _SHA1.fullmatch(value) is not None


def normalise_sha1(value: object) -> str | None:
    """The lower-case form of a 40-hex identifier, or None when it is not one."""
    if isinstance(value, str):
        candidate = value.strip()
        if is_sha1(candidate):
            return candidate.lower()
    return None


class AlertFormat(StrEnum):
    """The alert shapes the playbook reads."""

    STREAMING = "streaming"
    GRAPH = "graph"
    MDE = "mde"
    SENTINEL = "sentinel"


class EvidenceKind(StrEnum):
    """Which kind of evidence named the file."""

    FILE = "file"
    PROCESS = "process"


@dataclass(frozen=True, slots=True)
class Alert:
    """One Defender alert, whatever format it came in.

    ``severity`` is lower-case (informational, low, medium, high, unknown) and
    ``status`` lower-case (new, inprogress, resolved, unknown) when the format
    states them. ``alias_ids`` are other identifiers of the same alert in the system
    it came through (a Sentinel ``SystemAlertId``), kept so a person can find it.
    """

    id: str
    format: AlertFormat
    title: str | None = None
    severity: str | None = None
    status: str | None = None
    detection_source: str | None = None
    service_source: str | None = None
    category: str | None = None
    created: datetime | None = None
    alias_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What is known about a device; every field is None when not known.

    Facts come from the alert when it carries them, else from the Defender API.
    ``av_mode`` uses the API's string integers ("0" active ... "5" passive audit).
    ``av_status`` is what an alert says of the antivirus as given (Graph
    ``defenderAvStatus`` such as "updated" or "disabled", Sentinel ``AvStatus``):
    how up to date it is or whether it is off, never its active or passive mode.
    """

    device_id: str
    os_platform: str | None = None
    os_build: int | None = None
    os_version: str | None = None
    health_status: str | None = None
    onboarding_status: str | None = None
    av_mode: str | None = None
    machine_tags: tuple[str, ...] = ()
    device_name: str | None = None
    source: str = "alert"
    av_status: str | None = None


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What is known about a file's signature; None when not known."""

    sha1: str
    signer: str | None = None
    issuer: str | None = None
    file_publisher: str | None = None
    is_valid_certificate: bool | None = None
    source: str = "alert"


@dataclass(frozen=True, slots=True)
class Target:
    """One (device id, file SHA-1) pair named by one alert, with its evidence."""

    alert: Alert
    device_id: str
    sha1: str
    evidence: EvidenceKind
    evidence_role: str | None = None
    file_name: str | None = None
    folder_path: str | None = None
    sha256: str | None = None
    device: DeviceFacts | None = None
    file: FileFacts | None = None

    @property
    def alert_id(self) -> str:
        return self.alert.id

    @property
    def key(self) -> tuple[str, str]:
        """The identity of a target across alerts: (device id, SHA-1)."""
        return (self.device_id, self.sha1)

    def to_json(self) -> dict[str, Any]:
        """A flat, JSON-ready view, as ``extract`` prints it."""
        document: dict[str, Any] = {
            "alert_id": self.alert.id,
            "device_id": self.device_id,
            "sha1": self.sha1,
            "evidence": str(self.evidence),
            "format": str(self.alert.format),
            "evidence_role": self.evidence_role,
            "file_name": self.file_name,
            "folder_path": self.folder_path,
            "sha256": self.sha256,
            "alert_title": self.alert.title,
            "alert_severity": self.alert.severity,
            "alert_status": self.alert.status,
            "detection_source": self.alert.detection_source,
        }
        if self.file is not None:
            document["signer"] = self.file.signer
            document["issuer"] = self.file.issuer
            document["file_publisher"] = self.file.file_publisher
            document["is_valid_certificate"] = self.file.is_valid_certificate
        if self.device is not None:
            document["os_platform"] = self.device.os_platform
            document["os_build"] = self.device.os_build
            document["health_status"] = self.device.health_status
        return document


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input that could not be read, with where it was and why.

    ``source`` names the message (a file name, an Event Hub position);
    ``position`` points inside it (``records[3]``, ``value[0].evidence[2]``);
    ``reason`` is a stable machine-readable code; ``detail`` is for people.
    """

    source: str
    reason: str
    position: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "source": self.source,
            "reason": self.reason,
            "position": self.position,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Extraction:
    """Everything one message body yielded."""

    alerts: tuple[Alert, ...] = ()
    targets: tuple[Target, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    formats: tuple[AlertFormat, ...] = field(default=())
