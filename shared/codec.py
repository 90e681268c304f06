"""Targets and facts as JSON documents, for storage and queues.

A deferred target travels through the backlog queue, and facts fetched from
Defender are shared through Table storage; both outlive the process that made
them, and a later release of the app may read them. The documents are therefore
plain JSON with a version number, written field by field, and read back
strictly: a document that does not hold what its version promises raises
``CodecError`` naming the field, never yields a half-filled target.
"""

from __future__ import annotations

__all__ = [
    "CODEC_VERSION",
    "CodecError",
    "decode_device_facts",
    "decode_file_facts",
    "decode_target",
    "encode_device_facts",
    "encode_file_facts",
    "encode_target",
]

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from shared.errors import DefenderQuarantineError
from shared.targets import (
    Alert,
    AlertFormat,
    DeviceFacts,
    EvidenceKind,
    FileFacts,
    Target,
    is_sha1,
)

CODEC_VERSION = 1

_E = TypeVar("_E", AlertFormat, EvidenceKind)


class CodecError(DefenderQuarantineError, ValueError):
    """A stored or queued document is not a valid target or facts record."""


def encode_target(target: Target) -> dict[str, Any]:
    """Everything needed to judge ``target`` again, without its original message."""
    alert = target.alert
    return {
        "version": CODEC_VERSION,
        "alert": {
            "id": alert.id,
            "format": str(alert.format),
            "title": alert.title,
            "severity": alert.severity,
            "status": alert.status,
            "detection_source": alert.detection_source,
            "service_source": alert.service_source,
            "category": alert.category,
            "created": alert.created.isoformat() if alert.created else None,
            "alias_ids": list(alert.alias_ids),
        },
        "device_id": target.device_id,
        "sha1": target.sha1,
        "evidence": str(target.evidence),
        "evidence_role": target.evidence_role,
        "file_name": target.file_name,
        "folder_path": target.folder_path,
        "sha256": target.sha256,
        "device": encode_device_facts(target.device) if target.device else None,
        "file": encode_file_facts(target.file) if target.file else None,
    }


def decode_target(document: object) -> Target:
    """The target ``encode_target`` wrote.

    Raises:
        CodecError: the document is not one, or names an invalid identifier.
    """
    fields = _Fields(document, "target")
    fields.check_version()
    alert = _Fields(fields.raw("alert"), "alert")

    device = fields.raw("device")
    file = fields.raw("file")
    return Target(
        alert=Alert(
            id=alert.text("id"),
            format=_enum(AlertFormat, alert.text("format"), "alert.format"),
            title=alert.optional_text("title"),
            severity=alert.optional_text("severity"),
            status=alert.optional_text("status"),
            detection_source=alert.optional_text("detection_source"),
            service_source=alert.optional_text("service_source"),
            category=alert.optional_text("category"),
            created=alert.optional_time("created"),
            alias_ids=alert.texts("alias_ids"),
        ),
        device_id=fields.identifier("device_id"),
        sha1=fields.identifier("sha1"),
        evidence=_enum(EvidenceKind, fields.text("evidence"), "evidence"),
        evidence_role=fields.optional_text("evidence_role"),
        file_name=fields.optional_text("file_name"),
        folder_path=fields.optional_text("folder_path"),
        sha256=fields.optional_text("sha256"),
        device=decode_device_facts(device) if device is not None else None,
        file=decode_file_facts(file) if file is not None else None,
    )


def encode_device_facts(facts: DeviceFacts) -> dict[str, Any]:
    return {
        "version": CODEC_VERSION,
        "device_id": facts.device_id,
        "os_platform": facts.os_platform,
        "os_build": facts.os_build,
        "os_version": facts.os_version,
        "health_status": facts.health_status,
        "onboarding_status": facts.onboarding_status,
        "av_mode": facts.av_mode,
        "machine_tags": list(facts.machine_tags),
        "device_name": facts.device_name,
        "source": facts.source,
        "av_status": facts.av_status,
    }


def decode_device_facts(document: object) -> DeviceFacts:
    """Raises ``CodecError`` when ``document`` is not what the encoder wrote."""
    fields = _Fields(document, "device")
    fields.check_version()
    return DeviceFacts(
        device_id=fields.identifier("device_id"),
        os_platform=fields.optional_text("os_platform"),
        os_build=fields.optional_int("os_build"),
        os_version=fields.optional_text("os_version"),
        health_status=fields.optional_text("health_status"),
        onboarding_status=fields.optional_text("onboarding_status"),
        av_mode=fields.optional_text("av_mode"),
        machine_tags=fields.texts("machine_tags"),
        device_name=fields.optional_text("device_name"),
        source=fields.text("source"),
        av_status=fields.optional_text("av_status"),
    )


def encode_file_facts(facts: FileFacts) -> dict[str, Any]:
    return {
        "version": CODEC_VERSION,
        "sha1": facts.sha1,
        "signer": facts.signer,
        "issuer": facts.issuer,
        "file_publisher": facts.file_publisher,
        "is_valid_certificate": facts.is_valid_certificate,
        "source": facts.source,
    }


def decode_file_facts(document: object) -> FileFacts:
    """Raises ``CodecError`` when ``document`` is not what the encoder wrote."""
    fields = _Fields(document, "file")
    fields.check_version()
    return FileFacts(
        sha1=fields.identifier("sha1"),
        signer=fields.optional_text("signer"),
        issuer=fields.optional_text("issuer"),
        file_publisher=fields.optional_text("file_publisher"),
        is_valid_certificate=fields.optional_bool("is_valid_certificate"),
        source=fields.text("source"),
    )


class _Fields:
    """Typed reads from one JSON object, each naming the field it refuses."""

    def __init__(self, document: object, name: str) -> None:
        if not isinstance(document, Mapping):
            raise CodecError(f"{name} is not a JSON object")
        self._document = document
        self._name = name

    def check_version(self) -> None:
        version = self._document.get("version")
        if version != CODEC_VERSION:
            raise CodecError(
                f"{self._name} has version {version!r}; this release reads "
                f"{CODEC_VERSION}"
            )

    def raw(self, key: str) -> Any:
        return self._document.get(key)

    def text(self, key: str) -> str:
        value = self._document.get(key)
        if not isinstance(value, str) or not value:
            raise self._error(key, "a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self._document.get(key)
        if value is not None and not isinstance(value, str):
            raise self._error(key, "a string or null")
        return value

    def identifier(self, key: str) -> str:
        value = self.text(key)
        if not is_sha1(value):
            raise self._error(key, "40 hexadecimal characters")
        return value.lower()

    def optional_int(self, key: str) -> int | None:
        value = self._document.get(key)
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if value is not None and not is_int:
            raise self._error(key, "a whole number or null")
        return value

    def optional_bool(self, key: str) -> bool | None:
        value = self._document.get(key)
        if value is not None and not isinstance(value, bool):
            raise self._error(key, "true, false or null")
        return value

    def optional_time(self, key: str) -> datetime | None:
        value = self.optional_text(key)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise self._error(key, "an ISO 8601 time") from None

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._error(key, "a list of strings")
        return tuple(value)

    def _error(self, key: str, expected: str) -> CodecError:
        return CodecError(f"{self._name}.{key} must be {expected}")


def _enum(kind: type[_E], value: str, name: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member) for member in kind)
        raise CodecError(f"{name} is {value!r}, not one of {choices}") from None
