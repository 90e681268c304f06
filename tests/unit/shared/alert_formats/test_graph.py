"""Graph alerts_v2: device, file and process evidence."""

from __future__ import annotations

import json
from typing import Any

from shared.alert_formats import extract, extract_document
from shared.targets import AlertFormat, EvidenceKind
from tests.conftest import DATA

DEVICE = "7313aee99add6cd71b8890a6299c08927cae5784"
FILE_SHA1 = "11e9577d7d5abfdcb64f3f0468e068a29301ffdb"
PROCESS_SHA1 = "ef1b12a80bf8843075b7d1fb63c0ad3995bd6c96"


def _sample(name: str) -> Any:
    return json.loads((DATA / "graph" / name).read_bytes())


def test_alert_fields_are_normalised() -> None:
    extraction = extract_document(_sample("single_alert.json"), source="m")

    (alert,) = extraction.alerts
    assert alert.format is AlertFormat.GRAPH
    assert alert.id == "da638535120355001234_1546712345"
    assert alert.status == "inprogress"
    assert alert.severity == "medium"
    assert alert.service_source == "microsoftDefenderForEndpoint"
    assert alert.detection_source == "antivirus"


def test_device_evidence_facts_reach_every_target_on_that_device() -> None:
    extraction = extract_document(_sample("single_alert.json"), source="m")

    for target in extraction.targets:
        assert target.device is not None
        assert target.device.device_id == DEVICE
        assert target.device.os_platform == "Windows11"
        assert target.device.os_build == 22631
        assert target.device.os_version == "23H2"
        assert target.device.health_status == "active"
        assert target.device.onboarding_status == "onboarded"
        assert target.device.av_status == "updated"
        assert target.device.av_mode is None, "defenderAvStatus is not a mode"


def test_file_evidence_keeps_its_signature_and_path() -> None:
    extraction = extract_document(_sample("single_alert.json"), source="m")

    by_sha1 = {target.sha1: target for target in extraction.targets}
    target = by_sha1[FILE_SHA1]
    assert target.evidence is EvidenceKind.FILE
    assert target.evidence_role == "compromised"
    assert target.file_name == "invoice_viewer.exe"
    assert target.folder_path == "C:\\Users\\jdoe\\Downloads"
    assert target.file is not None
    assert target.file.signer == "Contoso Tools Ltd"
    assert target.file.file_publisher == "Contoso Tools Ltd"
    assert target.file.issuer is not None
    assert by_sha1[PROCESS_SHA1].evidence is EvidenceKind.PROCESS
    assert by_sha1[PROCESS_SHA1].file is None


def test_file_and_process_naming_one_file_merge_into_one_file_target() -> None:
    extraction = extract_document(
        _sample("file_and_process_same_sha1.json"), source="m"
    )

    (target,) = extraction.targets
    assert target.evidence is EvidenceKind.FILE
    assert target.evidence_role == "compromised"
    assert target.file_name == "agent.exe", "the process evidence had the name"
    assert target.file is not None
    assert target.file.signer == "Unknown Publisher Ltd"
    assert target.device is not None


def test_file_without_device_falls_back_on_every_device_evidence() -> None:
    extraction = extract_document(_sample("value_list.json"), source="m")

    first = [t for t in extraction.targets if t.alert_id.endswith("_998877665")]
    assert {t.device_id for t in first} == {
        "2019e78d0e2292d76334d306f5ef11798d409eb7",
        "5962fd301a84cc84eab845e9c9d83589a8070fec",
    }
    assert {t.evidence_role for t in first} == {"contextual,created"}
    assert {t.device.av_status for t in first if t.device} == {"updated", "disabled"}


def test_parent_image_is_not_read_even_when_it_is_the_only_image() -> None:
    alert = _sample("single_alert.json")
    process = alert["evidence"][2]
    process["imageFile"] = None

    extraction = extract_document(alert, source="m")

    assert {t.sha1 for t in extraction.targets} == {FILE_SHA1}
    assert extraction.rejections == ()


def test_evidence_that_is_not_an_object_is_rejected_and_the_rest_read() -> None:
    alert = _sample("single_alert.json")
    alert["evidence"].insert(0, "garbage")

    extraction = extract(json.dumps(alert), source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("invalid_record", "evidence[0]")
    ]
    assert len(extraction.targets) == 2


def test_alert_without_id_is_rejected_with_nothing_else() -> None:
    alert = _sample("single_alert.json")
    del alert["id"]

    extraction = extract_document({"value": [alert]}, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("missing_alert_id", "value[0].id")
    ]
    assert extraction.targets == ()
