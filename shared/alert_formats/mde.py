"""Defender for Endpoint API alerts (``GET /api/alerts``, ``$expand=evidence``).

The alert names one device, its ``machineId``; evidence items carry no machine id
of their own (``shared/defender-api.md`` section 6.1), so every file the alert names
is on that device. Evidence with ``entityType`` File names a file; Process names
the process image (its ``sha1``). The ``parentProcess*`` fields are never read.
Other entity types (User, Ip, Url...) are skipped.
"""

from __future__ import annotations

__all__ = ["is_alert", "read_alert"]

from collections.abc import Mapping

from shared.alert_formats._common import AlertDraft, EvidenceDraft, Reading, new_alert
from shared.alert_formats._values import at, items, mapping, text
from shared.targets import AlertFormat, EvidenceKind

_KINDS = {"file": EvidenceKind.FILE, "process": EvidenceKind.PROCESS}


def is_alert(item: Mapping[str, object]) -> bool:
    """Whether ``item`` looks like a Defender for Endpoint API alert."""
    if "machineId" in item or "alertCreationTime" in item:
        return True
    return any(
        "entityType" in evidence
        for evidence in items(item.get("evidence"))
        if isinstance(evidence, dict)
    )


def read_alert(
    item: Mapping[str, object], position: str, reading: Reading
) -> AlertDraft | None:
    """One Defender alert and its evidence; None when its id cannot be read."""
    alert_id = reading.alert_id(item.get("id"), at(position, "id"))
    if alert_id is None:
        return None

    draft = AlertDraft(
        new_alert(
            alert_id,
            AlertFormat.MDE,
            title=item.get("title"),
            severity=item.get("severity"),
            status=item.get("status"),
            detection_source=item.get("detectionSource"),
            category=item.get("category"),
            created=item.get("alertCreationTime"),
        )
    )
    machine_id = reading.device_id(item.get("machineId"), at(position, "machineId"))
    if machine_id is not None:
        draft.add_device(machine_id)

    for index, value in enumerate(items(item.get("evidence"))):
        evidence_position = at(position, f"evidence[{index}]")
        evidence = mapping(value)
        if evidence is None:
            reading.reject("invalid_record", evidence_position, "evidence is no object")
            continue

        kind = _KINDS.get((text(evidence.get("entityType")) or "").lower())
        if kind is None:
            continue
        sha1 = reading.sha1(evidence.get("sha1"), at(evidence_position, "sha1"))
        if sha1 is None:
            continue

        draft.evidence.append(
            EvidenceDraft(
                position=evidence_position,
                kind=kind,
                sha1=sha1,
                file_name=text(evidence.get("fileName")),
                folder_path=text(evidence.get("filePath")),
                sha256=text(evidence.get("sha256")),
            )
        )

    return draft
