"""A realistic Defender XDR stream for the demo tenant, as Event Hubs delivers it.

Every file the tenant observed on a device is named by one alert, as an
``AdvancedHunting-AlertInfo`` record and ``AdvancedHunting-AlertEvidence`` records
for the file, the machine and the signed-in user, so that each rule of the policy
meets at least one target. Around them the stream carries what a real one does:
process evidence whose device is only inside ``AdditionalFields``, a low-severity
alert, a file the device never saw, a message delivered twice, records of other
tables, and broken events.
"""

from __future__ import annotations

__all__ = ["StreamEvent", "build_stream"]

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator import demo as tenant_ids
from simulator.tenant import Device, Tenant

_EPOCH = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
_ALERTS_PER_MESSAGE = 3


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One Event Hubs event: its body and what the demo meant it to show."""

    body: bytes
    note: str


def build_stream(tenant: Tenant) -> list[StreamEvent]:
    """Event bodies for every observation of the tenant, plus the odd cases."""
    alerts = [
        _file_alert(tenant, device, sha1, folder, index)
        for index, (device, sha1, folder) in enumerate(_observed(tenant))
    ]
    alerts.append(_process_alert_with_host_in_additional_fields(len(alerts)))
    alerts.append(_never_seen_file_alert(len(alerts)))
    alerts.append(_low_severity_alert(len(alerts)))

    events = [
        StreamEvent(_message(alerts[start : start + _ALERTS_PER_MESSAGE]), "alerts")
        for start in range(0, len(alerts), _ALERTS_PER_MESSAGE)
    ]

    # Event Hubs delivers at least once: the first message arrives again.
    events.append(StreamEvent(events[0].body, "redelivered message"))
    events.append(StreamEvent(_other_table_message(), "records of another table"))
    events.extend(_broken_events())
    return events


def _observed(tenant: Tenant) -> list[tuple[Device, str, str | None]]:
    devices = {device.id: device for device in tenant.devices}
    observed = [
        (devices[seen.machine_id], seen.sha1, seen.file_path)
        for seen in tenant.observations
        if seen.machine_id in devices
    ]
    # The inactive device's alerts come first, so that its actions are submitted
    # before the per-file device cap holds later devices, and the demo can show
    # an action waiting for a device that never comes back (TimeOut).
    return sorted(observed, key=lambda item: item[0].is_active)


def _alert_id(index: int) -> str:
    digest = int(hashlib.sha256(f"demo stream {index}".encode()).hexdigest(), 16)
    digits = str(digest)
    return f"da{digits[:18]}_{digits[18:28]}"


def _record(category: str, properties: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "time": (at + timedelta(seconds=90)).isoformat().replace("+00:00", "Z"),
        "tenantId": tenant_ids.DEMO_TENANT_ID,
        "operationName": "Publish",
        "category": category,
        "Tenant": "DefaultTenant",
        "properties": {
            "Timestamp": at.isoformat().replace("+00:00", "Z"),
            "MachineGroup": None,
            **properties,
        },
    }


def _alert_info(
    alert_id: str, at: datetime, *, severity: str = "High", title: str
) -> dict[str, Any]:
    return _record(
        "AdvancedHunting-AlertInfo",
        {
            "AlertId": alert_id,
            "Title": title,
            "Category": "Malware",
            "Severity": severity,
            "ServiceSource": "Microsoft Defender for Endpoint",
            "DetectionSource": "Antivirus",
            "AttackTechniques": "[]",
        },
        at,
    )


def _evidence(alert_id: str, at: datetime, **columns: Any) -> dict[str, Any]:
    return _record(
        "AdvancedHunting-AlertEvidence",
        {
            "AlertId": alert_id,
            "Title": columns.pop("Title", "Malicious file detected"),
            "Categories": '["Malware"]',
            "AttackTechniques": "[]",
            "ServiceSource": "Microsoft Defender for Endpoint",
            "DetectionSource": "Antivirus",
            "EvidenceDirection": None,
            "AdditionalFields": columns.pop("AdditionalFields", "{}"),
            **columns,
        },
        at,
    )


def _file_alert(
    tenant: Tenant, device: Device, sha1: str, folder: str | None, index: int
) -> list[dict[str, Any]]:
    alert_id = _alert_id(index)
    at = _EPOCH + timedelta(minutes=index)
    record = tenant.file(sha1)
    file_name = record.file_name if record else None
    title = f"'{file_name}' malware was detected"

    return [
        _alert_info(alert_id, at, title=title),
        _evidence(
            alert_id,
            at,
            Title=title,
            EntityType="File",
            EvidenceRole="Impacted",
            DeviceId=device.id,
            DeviceName=device.computer_dns_name,
            FileName=file_name,
            FolderPath=folder,
            SHA1=sha1,
            SHA256=record.sha256 if record else None,
            FileSize=record.size if record else None,
        ),
        _evidence(
            alert_id,
            at,
            Title=title,
            EntityType="Machine",
            EvidenceRole="Impacted",
            DeviceId=device.id,
            DeviceName=device.computer_dns_name,
        ),
        _evidence(
            alert_id,
            at,
            Title=title,
            EntityType="User",
            EvidenceRole="Related",
            AccountName="alex",
            AccountDomain="contoso",
        ),
    ]


def _process_alert_with_host_in_additional_fields(index: int) -> list[dict[str, Any]]:
    # Real process rows may leave DeviceId empty; the device is then only named
    # inside the process's image file, in AdditionalFields.
    alert_id = _alert_id(index)
    at = _EPOCH + timedelta(minutes=index)
    image = {
        "$id": "2",
        "Name": "dropper.ps1",
        "Directory": "C:\\Users\\alex\\Downloads",
        "FileHashes": [
            {
                "$id": "3",
                "Algorithm": "SHA1",
                "Value": tenant_ids.FILE_SEEN_ON_WIN11_ONLY,
                "Type": "filehash",
            }
        ],
        "Host": {
            "$id": "4",
            "MachineId": tenant_ids.DEVICE_WIN11,
            "MachineIdType": "MdatpDeviceId",
            "HostName": "win11-23h2",
            "OSFamily": "Windows",
            "Type": "host",
        },
        "Type": "file",
    }
    process = {"$id": "1", "ProcessId": "4242", "ImageFile": image, "Type": "process"}
    title = "Suspicious PowerShell script"
    return [
        _alert_info(alert_id, at, title=title),
        _evidence(
            alert_id,
            at,
            Title=title,
            EntityType="Process",
            EvidenceRole="Impacted",
            DeviceId=None,
            ProcessCommandLine="powershell.exe -ep bypass -f dropper.ps1",
            AdditionalFields=json.dumps(process),
        ),
    ]


def _never_seen_file_alert(index: int) -> list[dict[str, Any]]:
    # Defender answers 404 for a file the device never observed.
    alert_id = _alert_id(index)
    at = _EPOCH + timedelta(minutes=index)
    title = "Archive tool flagged by a custom detection"
    return [
        _alert_info(alert_id, at, title=title),
        _evidence(
            alert_id,
            at,
            Title=title,
            EntityType="File",
            EvidenceRole="Impacted",
            DeviceId=tenant_ids.DEVICE_WIN10,
            FileName="archive_tool.exe",
            FolderPath="C:\\Tools",
            SHA1=tenant_ids.FILE_NEVER_SEEN,
        ),
    ]


def _low_severity_alert(index: int) -> list[dict[str, Any]]:
    alert_id = _alert_id(index)
    at = _EPOCH + timedelta(minutes=index)
    title = "Potentially unwanted application"
    return [
        _alert_info(alert_id, at, title=title, severity="Low"),
        _evidence(
            alert_id,
            at,
            Title=title,
            EntityType="File",
            EvidenceRole="Related",
            DeviceId=tenant_ids.DEVICE_WIN11,
            FileName="invoice_viewer.exe",
            FolderPath="C:\\Users\\alex\\AppData\\Local\\Temp",
            SHA1=tenant_ids.FILE_THIRD_PARTY,
        ),
    ]


def _message(alerts: list[list[dict[str, Any]]]) -> bytes:
    records = [record for alert in alerts for record in alert]
    return json.dumps({"records": records}).encode()


def _other_table_message() -> bytes:
    record = _record(
        "AdvancedHunting-DeviceEvents",
        {"DeviceId": tenant_ids.DEVICE_WIN10, "ActionType": "AntivirusScanCompleted"},
        _EPOCH,
    )
    return json.dumps({"records": [record]}).encode()


def _broken_events() -> list[StreamEvent]:
    bad_sha1 = _evidence(
        _alert_id(10_000),
        _EPOCH,
        EntityType="File",
        DeviceId=tenant_ids.DEVICE_WIN10,
        SHA1="not-a-sha1",
    )
    whole = _message([[bad_sha1]])
    return [
        StreamEvent(b"\x00\x01 this is not JSON", "event that is not JSON"),
        StreamEvent(whole[: len(whole) // 2], "truncated event"),
        StreamEvent(whole, "evidence with a malformed SHA-1"),
    ]
