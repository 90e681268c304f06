"""The JSON the API answers with, in Defender's live field names.

Field lists follow the documented entities plus the undocumented fields that live
tenants return (defender-api.md sections 2 to 6). Values the tenant seed does not
hold are filled with plausible constants: they are there so that a client meets the
real shape, not to be asserted on.
"""

from __future__ import annotations

__all__ = [
    "action_json",
    "alert_json",
    "av_info_json",
    "file_json",
    "machine_json",
]

import uuid
import zlib
from datetime import datetime
from typing import Any

from simulator.actions import MachineAction
from simulator.clock import format_moment, format_timestamp
from simulator.tenant import Alert, Device, Evidence, FileRecord, Tenant


def machine_json(device: Device, base_url: str) -> dict[str, Any]:
    """A machine entity, fields in the order a live tenant sends them."""
    ip_addresses = []
    if device.last_ip_address:
        ip_addresses.append(
            {
                "ipAddress": device.last_ip_address,
                "macAddress": "00155D" + device.id[:6].upper(),
                "type": "Ethernet",
                "operationalStatus": "Up",
            }
        )

    return {
        "@odata.context": f"{base_url}/api/$metadata#Machines/$entity",
        "id": device.id,
        "mergedIntoMachineId": None,
        "isPotentialDuplication": False,
        "isExcluded": False,
        "exclusionReason": None,
        "computerDnsName": device.computer_dns_name,
        "firstSeen": _moment(device.first_seen),
        "lastSeen": _moment(device.last_seen),
        "osPlatform": device.os_platform,
        "osVersion": None,
        "osProcessor": "x64",
        "version": device.version,
        "lastIpAddress": device.last_ip_address,
        "lastExternalIpAddress": None,
        "agentVersion": "10.8760.19041.4355" if device.is_windows else "101.24052.0002",
        "osBuild": device.os_build,
        "healthStatus": device.health_status,
        "deviceValue": "Normal",
        "rbacGroupId": 0,
        "rbacGroupName": device.rbac_group_name,
        "riskScore": "Medium",
        "exposureLevel": "Low",
        "isAadJoined": device.is_windows,
        "aadDeviceId": str(uuid.uuid5(uuid.NAMESPACE_OID, device.id)),
        "machineTags": list(device.machine_tags),
        "defenderAvStatus": device.defender_av_status,
        "onboardingStatus": device.onboarding_status,
        "osArchitecture": device.os_architecture,
        "managedBy": "Intune",
        "managedByStatus": "Unknown",
        "ipAddresses": ip_addresses,
        "vmMetadata": None,
    }


def file_json(record: FileRecord, base_url: str) -> dict[str, Any]:
    return {
        "@odata.context": f"{base_url}/api/$metadata#Files/$entity",
        "sha1": record.sha1,
        "sha256": record.sha256,
        "globalPrevalence": record.global_prevalence,
        "globalFirstObserved": None,
        "globalLastObserved": None,
        "size": record.size,
        "fileType": record.file_type,
        "isPeFile": record.is_pe_file,
        "filePublisher": record.file_publisher,
        "fileProductName": record.file_product_name,
        "signer": record.signer,
        "issuer": record.issuer,
        "signerHash": record.signer_hash,
        "isValidCertificate": record.is_valid_certificate,
        "determinationType": record.determination_type,
        "determinationValue": record.determination_value,
    }


def av_info_json(device: Device) -> dict[str, Any]:
    """One row of ``/api/deviceavinfo``; ``avMode`` is a string-typed integer."""
    platform = device.os_platform.lower()
    os_kind = (
        "windows" if device.is_windows else "mac" if "mac" in platform else "linux"
    )
    os_version = f"10.0.{device.os_build}.4291" if device.os_build else device.version
    last_seen = _moment(device.last_seen)
    running = device.av_mode != "2"

    return {
        "id": device.id,
        "machineId": device.id,
        "computerDnsName": device.computer_dns_name,
        "osKind": os_kind,
        "osPlatform": device.os_platform,
        "osVersion": os_version,
        "avMode": device.av_mode,
        "avSignatureVersion": "1.421.1234.0",
        "avEngineVersion": "1.1.24090.11",
        "avPlatformVersion": "4.18.24090.11",
        "avIsSignatureUpToDate": "True" if running else "False",
        "avIsEngineUpToDate": "True" if running else "False",
        "avIsPlatformUpToDate": "True" if running else "False",
        "avSignaturePublishTime": last_seen,
        "avSignatureUpdateTime": last_seen,
        "avEngineUpdateTime": last_seen,
        "avPlatformUpdateTime": last_seen,
        "lastSeenTime": last_seen,
        "dataRefreshTimestamp": last_seen,
        "quickScanResult": "Completed",
        "quickScanError": "",
        "quickScanTime": last_seen,
        "fullScanResult": "",
        "fullScanError": "",
        "fullScanTime": None,
        "rbacGroupId": 0,
        "rbacGroupName": device.rbac_group_name or "Unassigned",
    }


def action_json(action: MachineAction, base_url: str | None = None) -> dict[str, Any]:
    """A StopAndQuarantineFile machine action; ``base_url`` adds ``@odata.context``."""
    body: dict[str, Any] = {}
    if base_url is not None:
        body["@odata.context"] = f"{base_url}/api/$metadata#MachineActions/$entity"

    cancelled_at = action.cancelled_at
    body |= {
        "id": action.id,
        "type": "StopAndQuarantineFile",
        "title": f"Stop and quarantine file {action.sha1}",
        "requestor": action.requestor,
        "requestorComment": action.requestor_comment,
        "status": action.status.value,
        "machineId": action.machine_id,
        "computerDnsName": action.computer_dns_name,
        "creationDateTimeUtc": format_timestamp(action.created_at),
        "lastUpdateDateTimeUtc": format_timestamp(action.updated_at),
        "cancellationRequestor": action.cancellation_requestor,
        "cancellationComment": action.cancellation_comment,
        "cancellationDateTimeUtc": (
            None if cancelled_at is None else format_timestamp(cancelled_at)
        ),
        "errorHResult": action.error_hresult,
        "scope": None,
        "externalId": None,
        "requestSource": "PublicApi",
        "relatedFileInfo": {
            "fileIdentifier": action.sha1,
            "fileIdentifierType": "Sha1",
        },
        "commands": [],
        "troubleshootInfo": None,
    }
    return body


def alert_json(
    alert: Alert, tenant: Tenant, base_url: str, *, with_evidence: bool
) -> dict[str, Any]:
    """An alert; its ``evidence`` list stays empty unless it was expanded."""
    device = tenant.device(alert.machine_id)
    created = format_moment(alert.created)
    evidence = (
        [_evidence_json(item, tenant, created) for item in alert.evidence]
        if with_evidence
        else []
    )

    return {
        "@odata.context": f"{base_url}/api/$metadata#Alerts/$entity",
        "id": alert.id,
        "incidentId": zlib.crc32(alert.id.encode()) % 100_000,
        "investigationId": None,
        "assignedTo": None,
        "severity": alert.severity,
        "status": alert.status,
        "classification": None,
        "determination": None,
        "investigationState": "Queued",
        "detectionSource": alert.detection_source,
        "detectorId": str(uuid.uuid5(uuid.NAMESPACE_OID, alert.title)),
        "category": alert.category,
        "threatFamilyName": alert.threat_family_name,
        "title": alert.title,
        "description": alert.title,
        "alertCreationTime": created,
        "firstEventTime": created,
        "lastEventTime": created,
        "lastUpdateTime": created,
        "resolvedTime": None,
        "machineId": alert.machine_id,
        "computerDnsName": device.computer_dns_name if device else None,
        "rbacGroupName": device.rbac_group_name if device else None,
        "aadTenantId": tenant.tenant_id,
        "threatName": None,
        "mitreTechniques": [],
        "relatedUser": None,
        "loggedOnUsers": [],
        "comments": [],
        "evidence": evidence,
    }


def _evidence_json(item: Evidence, tenant: Tenant, created: str) -> dict[str, Any]:
    known = tenant.file(item.sha1) if item.sha1 else None
    sha256 = item.sha256 or (known.sha256 if known else None)

    return {
        "entityType": item.entity_type,
        "evidenceCreationTime": created,
        "sha1": item.sha1,
        "sha256": sha256,
        "fileName": item.file_name,
        "filePath": item.file_path,
        "processId": item.process_id,
        "processCommandLine": item.process_command_line,
        "processCreationTime": created if item.process_id is not None else None,
        "parentProcessId": None,
        "parentProcessCreationTime": None,
        "parentProcessFileName": None,
        "parentProcessFilePath": None,
        "ipAddress": None,
        "url": None,
        "registryKey": None,
        "registryHive": None,
        "registryValueType": None,
        "registryValue": None,
        "accountName": item.account_name,
        "domainName": item.domain_name,
        "userSid": None,
        "aadUserId": None,
        "userPrincipalName": None,
        "detectionStatus": item.detection_status,
    }


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else format_moment(moment)
