"""What every format shares: reading identifiers, alert drafts, and building targets.

A format module reads its shape into ``AlertDraft`` values (the alert, the devices
it names, and its file and process evidence); ``build_targets`` then applies the
target rules once for all formats:

- a target comes from file evidence, or from the image of process evidence;
- its device is the one the evidence states, else every device of the alert, else
  there is none and the SHA-1 is rejected as ``no_device``;
- the same (alert, device, SHA-1) is one target. Its facts are merged field by field,
  file evidence first, so a target named by both a file and a process reads as
  ``file`` evidence (the file is what the alert is about; the process only ran it)
  and keeps any fact that either one stated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

from shared.alert_formats._json import JsonRejected, decode_text
from shared.alert_formats._values import (
    is_absent,
    normalise_severity,
    normalise_status,
    show,
    text,
    timestamp,
    whole_number,
)
from shared.targets import (
    Alert,
    AlertFormat,
    DeviceFacts,
    EvidenceKind,
    FileFacts,
    Rejection,
    Target,
    normalise_sha1,
)

# Defender alert ids look like "da637472900382838869_1364969609"; Sentinel's are
# GUIDs. Anything with spaces, slashes or control characters is not an alert id.
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$")


_Facts = TypeVar("_Facts", DeviceFacts, FileFacts)


@dataclass(frozen=True, slots=True)
class EvidenceDraft:
    """One file or process image an alert names, before the device rules apply."""

    position: str
    kind: EvidenceKind
    sha1: str
    device_ids: tuple[str, ...] = ()
    role: str | None = None
    file_name: str | None = None
    folder_path: str | None = None
    sha256: str | None = None
    signer: str | None = None
    issuer: str | None = None
    file_publisher: str | None = None
    is_valid_certificate: bool | None = None


@dataclass(slots=True)
class AlertDraft:
    """An alert as read so far: the devices it names and its evidence."""

    alert: Alert
    devices: dict[str, DeviceFacts | None] = field(default_factory=dict)
    evidence: list[EvidenceDraft] = field(default_factory=list)

    def add_device(self, device_id: str, facts: DeviceFacts | None = None) -> None:
        """Name a device of this alert, merging facts stated more than once."""
        known = self.devices.get(device_id)
        self.devices[device_id] = merge_first(known, facts)


class Reading:
    """The rejections of one message, and the readers of ids that record them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rejections: list[Rejection] = []

    def reject(self, reason: str, position: str, detail: str = "") -> None:
        self.rejections.append(
            Rejection(
                source=self.source, reason=reason, position=position, detail=detail
            )
        )

    def alert_id(self, value: object, position: str) -> str | None:
        """The alert id, or None after rejecting a missing or malformed one."""
        if value is None or (isinstance(value, str) and not value.strip()):
            self.reject("missing_alert_id", position, "the alert has no id")
            return None
        if not isinstance(value, str) or not _ALERT_ID.match(value.strip()):
            self.reject("invalid_alert_id", position, f"not an alert id: {show(value)}")
            return None
        return value.strip()

    def device_id(self, value: object, position: str) -> str | None:
        """A lower-case device id; None when absent, or after rejecting a bad one."""
        if is_absent(value):
            return None
        device_id = normalise_sha1(value)
        if device_id is None:
            self.reject(
                "invalid_device_id",
                position,
                f"a device id is 40 hexadecimal characters, not {show(value)}",
            )
        return device_id

    def sha1(self, value: object, position: str) -> str | None:
        """A lower-case SHA-1; None when absent, or after rejecting a bad one."""
        if is_absent(value):
            return None
        sha1 = normalise_sha1(value)
        if sha1 is None:
            self.reject(
                "invalid_sha1",
                position,
                f"a SHA-1 is 40 hexadecimal characters, not {show(value)}",
            )
        return sha1

    def embedded_json(self, value: object, position: str) -> object:
        """The value of a JSON document held in a string field; None if unreadable.

        A field that is already decoded (an exporter that parsed it) is taken as is.
        """
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        try:
            return decode_text(value)
        except JsonRejected as exc:
            self.reject(exc.reason, position, exc.detail)
            return None


def build_targets(
    drafts: Iterable[AlertDraft], reading: Reading
) -> tuple[tuple[Alert, ...], tuple[Target, ...]]:
    """The alerts and their targets, one per (alert, device, SHA-1)."""
    alerts: dict[str, Alert] = {}
    candidates: dict[tuple[str, str, str], list[Target]] = {}

    for draft in drafts:
        alert = alerts.setdefault(draft.alert.id, draft.alert)
        for evidence in draft.evidence:
            for target in _targets_of(alert, evidence, draft, reading):
                key = (alert.id, target.device_id, target.sha1)
                candidates.setdefault(key, []).append(target)

    targets = tuple(_merge_targets(named) for named in candidates.values())
    return tuple(alerts.values()), targets


def _targets_of(
    alert: Alert, evidence: EvidenceDraft, draft: AlertDraft, reading: Reading
) -> list[Target]:
    device_ids = evidence.device_ids or tuple(draft.devices)
    if not device_ids:
        reading.reject(
            "no_device",
            evidence.position,
            f"alert {alert.id} names file {evidence.sha1} on no device",
        )
        return []

    file_facts = FileFacts(
        sha1=evidence.sha1,
        signer=evidence.signer,
        issuer=evidence.issuer,
        file_publisher=evidence.file_publisher,
        is_valid_certificate=evidence.is_valid_certificate,
    )
    knows_file = any(
        value is not None
        for value in (
            evidence.signer,
            evidence.issuer,
            evidence.file_publisher,
            evidence.is_valid_certificate,
        )
    )

    return [
        Target(
            alert=alert,
            device_id=device_id,
            sha1=evidence.sha1,
            evidence=evidence.kind,
            evidence_role=evidence.role,
            file_name=evidence.file_name,
            folder_path=evidence.folder_path,
            sha256=evidence.sha256,
            device=draft.devices.get(device_id),
            file=file_facts if knows_file else None,
        )
        for device_id in device_ids
    ]


def _merge_targets(named: list[Target]) -> Target:
    # File evidence first, then the order the alert named them in.
    ordered = sorted(named, key=lambda target: target.evidence != EvidenceKind.FILE)
    merged = ordered[0]
    for other in ordered[1:]:
        merged = replace(
            merged,
            evidence_role=merged.evidence_role or other.evidence_role,
            file_name=merged.file_name or other.file_name,
            folder_path=merged.folder_path or other.folder_path,
            sha256=merged.sha256 or other.sha256,
            device=merge_first(merged.device, other.device),
            file=merge_first(merged.file, other.file),
        )
    return merged


def merge_first(first: _Facts | None, second: _Facts | None) -> _Facts | None:
    """Facts with each field taken from ``first`` unless it does not know it."""
    if first is None or second is None:
        return first if second is None else second

    missing = {
        item.name: getattr(second, item.name)
        for item in fields(first)
        if getattr(first, item.name) in (None, ())
        and getattr(second, item.name) not in (None, ())
    }
    return replace(first, **missing) if missing else first


def device_facts(
    device_id: str,
    *,
    os_platform: object = None,
    os_build: object = None,
    os_version: object = None,
    health_status: object = None,
    onboarding_status: object = None,
    av_status: object = None,
    device_name: object = None,
) -> DeviceFacts | None:
    """Facts an alert states about a device, or None when it states none.

    A name alone is not a fact the policy can judge by, so it makes no facts.
    """
    facts = DeviceFacts(
        device_id=device_id,
        os_platform=text(os_platform),
        os_build=whole_number(os_build),
        os_version=text(os_version),
        health_status=text(health_status),
        onboarding_status=text(onboarding_status),
        av_status=text(av_status),
        device_name=text(device_name),
    )
    judged = (
        facts.os_platform,
        facts.os_build,
        facts.os_version,
        facts.health_status,
        facts.onboarding_status,
        facts.av_status,
    )
    return facts if any(value is not None for value in judged) else None


def new_alert(
    alert_id: str,
    alert_format: AlertFormat,
    *,
    title: object = None,
    severity: object = None,
    status: object = None,
    detection_source: object = None,
    service_source: object = None,
    category: object = None,
    created: object = None,
    alias_ids: tuple[str, ...] = (),
) -> Alert:
    """An ``Alert`` from wire values, normalised."""
    return Alert(
        id=alert_id,
        format=alert_format,
        title=text(title),
        severity=normalise_severity(severity),
        status=normalise_status(status),
        detection_source=text(detection_source),
        service_source=text(service_source),
        category=text(category),
        created=timestamp(created),
        alias_ids=alias_ids,
    )
