"""Streaming API records: correlation by alert, AlertInfo, and AdditionalFields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.alert_formats import extract, extract_document
from shared.targets import AlertFormat, EvidenceKind
from tests.conftest import DATA

DEVICE_A = "a84bba07931db925306a0799dc6ebd718b8c764d"
DEVICE_B = "0a4f9fa423350b233931da53f50a0be52d057e0b"
SHA1_A = "1c0acb3dea13519a60a077bbd142880e8427abee"
SHA1_B = "d04ab3005440698c83998e1705bb7a7af3d2e242"


def _sample(name: str) -> bytes:
    return (DATA / "streaming" / name).read_bytes()


def _record(category: str, **properties: Any) -> dict[str, Any]:
    return {
        "time": "2024-06-11T08:44:14.9047460Z",
        "tenantId": "4f2c9a1e-7b3d-4c8e-9f61-2a5d8c0b3e17",
        "operationName": "Publish",
        "category": f"AdvancedHunting-{category}",
        "properties": properties,
    }


def test_alert_info_gives_the_alert_its_title_severity_and_sources() -> None:
    extraction = extract(_sample("alert_info_enrichment.json"), source="m")

    (alert,) = extraction.alerts
    assert alert.format is AlertFormat.STREAMING
    assert alert.title == "Ransomware behavior detected in the file system"
    assert alert.severity == "high"
    assert alert.category == "Ransomware"
    assert alert.detection_source == "EDR"
    assert alert.service_source == "Microsoft Defender for Endpoint"
    assert alert.created == datetime(2024, 6, 11, 9, 10, 2, 123456, tzinfo=UTC)
    assert extraction.targets[0].alert is alert


def test_evidence_row_describes_the_alert_when_no_alert_info_came() -> None:
    extraction = extract(_sample("file_and_machine.json"), source="m")

    (alert,) = extraction.alerts
    assert alert.title == "'Wacatac' malware was detected"
    assert alert.severity == "medium"
    assert alert.category == "Malware"
    assert alert.detection_source == "Antivirus"
    assert alert.status is None


def test_machine_row_facts_reach_the_target_of_the_file_row() -> None:
    extraction = extract(_sample("file_and_machine.json"), source="m")

    (target,) = extraction.targets
    assert target.sha1 == SHA1_A, "the upper-case SHA1 column is lower-cased"
    assert target.file_name == "invoice_0611.exe"
    assert target.folder_path == "C:\\Users\\jdoe\\Downloads"
    assert target.evidence_role == "Impacted"
    assert target.device is not None
    assert target.device.device_id == DEVICE_A
    assert target.device.os_platform == "Windows"
    assert target.device.os_version == "22H2"
    assert target.device.health_status == "Active"
    assert target.device.onboarding_status == "Onboarded"
    assert target.device.device_name == "ws-fin-014"


def test_process_row_is_read_from_its_image_in_additional_fields() -> None:
    extraction = extract(
        _sample("process_device_in_additional_fields.json"), source="m"
    )

    (target,) = extraction.targets
    assert target.evidence is EvidenceKind.PROCESS
    assert target.file_name == "updater.exe"
    assert target.folder_path == "C:\\Users\\jdoe\\AppData\\Local\\Temp"
    assert target.sha256 is not None
    assert len(target.sha256) == 64
    assert target.file is not None
    assert target.file.file_publisher == "Fabrikam Software Ltd"
    assert target.device is not None
    assert target.device.device_name == "ws-eng-201"


def test_records_of_other_tables_are_skipped_without_rejection() -> None:
    document = {
        "records": [
            _record("DeviceEvents", DeviceId=DEVICE_A, SHA1=SHA1_A),
            _record("DeviceFileEvents", DeviceId=DEVICE_A, SHA1=SHA1_A),
        ]
    }

    extraction = extract_document(document, source="m")

    assert extraction.targets == ()
    assert extraction.rejections == ()
    assert extraction.alerts == ()


def test_alert_info_alone_is_an_alert_without_targets() -> None:
    document = _record(
        "AlertInfo", AlertId="da638534960011223344_1", Severity="Low", Title="t"
    )

    extraction = extract_document(document, source="m")

    assert [alert.id for alert in extraction.alerts] == ["da638534960011223344_1"]
    assert extraction.targets == ()
    assert extraction.rejections == ()


def test_file_without_device_does_not_borrow_another_alerts_device() -> None:
    document = [
        _record(
            "AlertEvidence", AlertId="da1_1", EntityType="Machine", DeviceId=DEVICE_A
        ),
        _record("AlertEvidence", AlertId="da2_2", EntityType="File", SHA1=SHA1_B),
    ]

    extraction = extract_document(document, source="m")

    assert extraction.targets == ()
    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("no_device", "[1]")
    ]
    assert SHA1_B in extraction.rejections[0].detail
    assert "da2_2" in extraction.rejections[0].detail


def test_file_row_names_every_device_of_its_alert_when_it_states_none() -> None:
    document = [
        _record("AlertEvidence", AlertId="da1_1", EntityType="File", SHA1=SHA1_B),
        _record(
            "AlertEvidence", AlertId="da1_1", EntityType="Machine", DeviceId=DEVICE_A
        ),
        _record("AlertEvidence", AlertId="da1_1", EntityType="Ip", DeviceId=DEVICE_B),
    ]

    extraction = extract_document(document, source="m")

    assert {(t.device_id, t.sha1) for t in extraction.targets} == {
        (DEVICE_A, SHA1_B),
        (DEVICE_B, SHA1_B),
    }


def test_malformed_additional_fields_of_a_row_that_needs_none_is_not_read() -> None:
    document = _record(
        "AlertEvidence",
        AlertId="da1_1",
        EntityType="User",
        DeviceId=DEVICE_A,
        AdditionalFields="{not json",
        Categories="[broken",
    )

    extraction = extract_document(document, source="m")

    assert extraction.rejections == ()
    assert extraction.alerts[0].category is None


def test_sha1_inside_additional_fields_is_used_when_the_column_is_empty() -> None:
    details = {
        "$id": "1",
        "Name": "drop.exe",
        "Directory": "C:\\Temp",
        "FileHashes": [{"$id": "2", "Algorithm": "SHA1", "Value": SHA1_A.upper()}],
        "Host": {"$id": "3", "MachineId": DEVICE_B, "Type": "host"},
        "Type": "file",
    }
    document = _record(
        "AlertEvidence",
        AlertId="da1_1",
        EntityType="File",
        SHA1=None,
        AdditionalFields=json.dumps(details),
    )

    extraction = extract_document(document, source="m")

    (target,) = extraction.targets
    assert (target.device_id, target.sha1) == (DEVICE_B, SHA1_A)
    assert target.file_name == "drop.exe"


def test_record_without_properties_is_rejected() -> None:
    document = {
        "records": [{"category": "AdvancedHunting-AlertEvidence", "properties": 7}]
    }

    extraction = extract_document(document, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("invalid_record", "records[0]")
    ]
