"""Microsoft Graph security ``alerts_v2`` alerts.

Evidence items carry an ``@odata.type`` (``shared/defender-api.md`` section 6.2):

- ``#microsoft.graph.security.deviceEvidence``: a device of the alert
  (``mdeDeviceId``) with facts the policy uses: ``osPlatform``, ``osBuild``,
  ``version``, ``healthStatus``, ``onboardingStatus``, ``defenderAvStatus``;
- ``#microsoft.graph.security.fileEvidence``: ``fileDetails`` (hashes, name, path,
  signer, issuer, publisher) and the ``mdeDeviceId`` it was seen on;
- ``#microsoft.graph.security.processEvidence``: the process ``imageFile`` and its
  ``mdeDeviceId``. ``parentProcessImageFile`` names the parent, not the evidence,
  and is never read.

Other evidence types (users, IPs, URLs, mailboxes) name no file and are skipped.
"""

from __future__ import annotations

__all__ = ["is_alert", "read_alert"]

from collections.abc import Mapping

from shared.alert_formats._common import (
    AlertDraft,
    EvidenceDraft,
    Reading,
    device_facts,
    new_alert,
)
from shared.alert_formats._values import at, items, mapping, text
from shared.targets import AlertFormat, DeviceFacts, EvidenceKind

_PREFIX = "#microsoft.graph.security."


def is_alert(item: Mapping[str, object]) -> bool:
    """Whether ``item`` looks like a Graph security alert."""
    odata_type = text(item.get("@odata.type")) or ""
    if odata_type.lower() == _PREFIX + "alert":
        return True
    if "providerAlertId" in item or "serviceSource" in item:
        return True
    return any(
        "@odata.type" in evidence
        for evidence in items(item.get("evidence"))
        if isinstance(evidence, dict)
    )


def read_alert(
    item: Mapping[str, object], position: str, reading: Reading
) -> AlertDraft | None:
    """One Graph alert and its evidence; None when its id cannot be read."""
    alert_id = reading.alert_id(item.get("id"), at(position, "id"))
    if alert_id is None:
        return None

    draft = AlertDraft(
        new_alert(
            alert_id,
            AlertFormat.GRAPH,
            title=item.get("title"),
            severity=item.get("severity"),
            status=item.get("status"),
            detection_source=item.get("detectionSource"),
            service_source=item.get("serviceSource"),
            category=item.get("category"),
            created=item.get("createdDateTime"),
        )
    )

    for index, value in enumerate(items(item.get("evidence"))):
        evidence_position = at(position, f"evidence[{index}]")
        evidence = mapping(value)
        if evidence is None:
            reading.reject("invalid_record", evidence_position, "evidence is no object")
            continue
        _read_evidence(draft, evidence, evidence_position, reading)

    return draft


def _read_evidence(
    draft: AlertDraft,
    evidence: Mapping[str, object],
    position: str,
    reading: Reading,
) -> None:
    kind = (text(evidence.get("@odata.type")) or "").lower().removeprefix(_PREFIX)
    device_id = reading.device_id(
        evidence.get("mdeDeviceId"), at(position, "mdeDeviceId")
    )

    if kind == "deviceevidence":
        if device_id is not None:
            draft.add_device(device_id, _device_facts(device_id, evidence))
        return
    if device_id is not None:
        draft.add_device(device_id)

    if kind == "fileevidence":
        details, evidence_kind = evidence.get("fileDetails"), EvidenceKind.FILE
    elif kind == "processevidence":
        details, evidence_kind = evidence.get("imageFile"), EvidenceKind.PROCESS
    else:
        return

    file = mapping(details) or {}
    detail_key = "fileDetails" if evidence_kind is EvidenceKind.FILE else "imageFile"
    sha1 = reading.sha1(file.get("sha1"), at(position, f"{detail_key}.sha1"))
    if sha1 is None:
        return

    draft.evidence.append(
        EvidenceDraft(
            position=position,
            kind=evidence_kind,
            sha1=sha1,
            device_ids=(device_id,) if device_id is not None else (),
            role=_roles(evidence.get("roles")),
            file_name=text(file.get("fileName")),
            folder_path=text(file.get("filePath")),
            sha256=text(file.get("sha256")),
            signer=text(file.get("signer")),
            issuer=text(file.get("issuer")),
            file_publisher=text(file.get("filePublisher")),
        )
    )


def _device_facts(device_id: str, evidence: Mapping[str, object]) -> DeviceFacts | None:
    return device_facts(
        device_id,
        os_platform=evidence.get("osPlatform"),
        os_build=evidence.get("osBuild"),
        os_version=evidence.get("version"),
        health_status=evidence.get("healthStatus"),
        onboarding_status=evidence.get("onboardingStatus"),
        av_status=evidence.get("defenderAvStatus"),
        device_name=evidence.get("deviceDnsName"),
    )


def _roles(value: object) -> str | None:
    # Graph gives a list ("compromised", "contextual"...); the target keeps one
    # string, so several roles are joined in the order given.
    roles = [role for role in (text(entry) for entry in items(value)) if role]
    return ",".join(roles) if roles else None
