"""Sentinel SecurityAlert rows: alert ids, $ref entities, hosts and parents."""

from __future__ import annotations

import json
from typing import Any

from shared.alert_formats import extract_document
from shared.targets import AlertFormat, EvidenceKind
from tests.conftest import DATA

SYSTEM_ALERT_ID = "6092461b-5418-9bae-c7c8-dd1e29b8f83a"
VENDOR_ID = "3cb12a2f-33e5-42ea-9238-be9ffbc212e2_1"
HOST = "71c19baf8be849c2e1d61b2d896a3a8237b9f3f1"
IMAGE_SHA1 = "edd542db04f0bb544c90f1675da37a9eaec0d213"


def _sample(name: str) -> Any:
    return json.loads((DATA / "sentinel" / name).read_bytes())


def test_alert_id_is_defenders_from_the_link_and_others_are_kept() -> None:
    extraction = extract_document(_sample("mdatp_row.json"), source="m")

    (alert,) = extraction.alerts
    assert alert.format is AlertFormat.SENTINEL
    assert alert.id == "da" + VENDOR_ID
    assert alert.alias_ids == (SYSTEM_ALERT_ID, VENDOR_ID)
    assert alert.severity == "high"
    assert alert.status == "new"
    assert alert.title == "Suspicious process executed"
    assert alert.service_source == "Microsoft Defender Advanced Threat Protection"


def test_vendor_id_in_defender_form_is_the_alert_id() -> None:
    extraction = extract_document(_sample("rows_multiple_hosts.json"), source="m")

    (alert,) = extraction.alerts
    assert alert.id == "da638535210011223344_667788990"
    assert alert.alias_ids == ("b1e7d4c2-9a3f-4e6b-8c1d-2f5a7e9b0c3d",)
    assert alert.status == "inprogress"


def test_without_a_defender_id_the_system_alert_id_is_used() -> None:
    extraction = extract_document(
        _sample("row_list_without_defender_id.json"), source="m"
    )

    (alert,) = extraction.alerts
    assert alert.id == "c2d3e4f5-a6b7-4c8d-9e0f-1a2b3c4d5e6f"
    assert alert.alias_ids == ("8e2f1c3d-4b5a-6c7d-8e9f-0a1b2c3d4e5f_1",)
    assert alert.severity == "informational"
    assert alert.status == "resolved", "a dismissed alert is closed"


def test_process_image_hashes_are_resolved_through_refs() -> None:
    extraction = extract_document(_sample("mdatp_row.json"), source="m")

    (target,) = extraction.targets
    assert target.evidence is EvidenceKind.PROCESS
    assert (target.device_id, target.sha1) == (HOST, IMAGE_SHA1)
    assert target.file_name == "p.exe"
    assert target.sha256 is not None


def test_host_entity_facts_reach_the_target() -> None:
    extraction = extract_document(_sample("mdatp_row.json"), source="m")

    device = extraction.targets[0].device
    assert device is not None
    assert device.os_platform == "Windows"
    assert device.os_version == "1809"
    assert device.health_status == "Active"
    assert device.onboarding_status == "Onboarded"
    assert device.av_status == "NotSupported"
    assert device.device_name == "ws-lab-12.corp.contoso.com"


def test_entities_already_decoded_are_read_the_same() -> None:
    row = _sample("mdatp_row.json")
    expected = extract_document(row, source="m")
    row["Entities"] = json.loads(row["Entities"])

    extraction = extract_document(row, source="m")

    assert extraction == expected


def test_unreadable_entities_are_rejected_and_the_alert_kept() -> None:
    row = _sample("mdatp_row.json")
    row["Entities"] = row["Entities"][:-40]

    extraction = extract_document({"value": [row]}, source="m")

    assert [r.position for r in extraction.rejections] == ["value[0].Entities"]
    assert extraction.rejections[0].reason in {"not_json", "truncated"}
    assert len(extraction.alerts) == 1
    assert extraction.targets == ()


def test_process_is_a_parent_only_while_a_listed_process_names_it() -> None:
    row = _sample("mdatp_row.json")
    entities = json.loads(row["Entities"])
    # Replace the child process by its parent, in full: nothing names it a parent.
    entities[1] = entities[1]["ParentProcess"]
    entities[2] = {"$ref": "999"}
    row["Entities"] = json.dumps(entities)

    extraction = extract_document(row, source="m")

    assert {t.sha1 for t in extraction.targets} == {
        "1c77737b081faec1cd8cf5c82f96ec8fffd4051f"
    }
