"""Defender for Endpoint API alerts: the alert's machine is every file's device."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from shared.alert_formats import extract_document
from shared.targets import AlertFormat
from tests.conftest import DATA


def _sample(name: str) -> Any:
    return json.loads((DATA / "mde" / name).read_bytes())


def test_upper_case_machine_id_becomes_the_lower_case_device_id() -> None:
    alert = _sample("single_alert.json")
    assert alert["machineId"] != alert["machineId"].lower()

    extraction = extract_document(alert, source="m")

    assert {t.device_id for t in extraction.targets} == {alert["machineId"].lower()}
    assert all(t.device is None for t in extraction.targets)


def test_severity_and_status_are_normalised() -> None:
    extraction = extract_document(_sample("alert_list.json"), source="m")

    assert [(a.severity, a.status) for a in extraction.alerts] == [
        ("high", "inprogress"),
        ("unknown", "unknown"),
    ]
    assert {a.format for a in extraction.alerts} == {AlertFormat.MDE}


def test_evidence_keeps_file_name_path_and_sha256() -> None:
    extraction = extract_document(_sample("single_alert.json"), source="m")

    target = extraction.targets[0]
    assert target.file_name == "emotet_loader.dll"
    assert target.folder_path == "C:\\Users\\lee\\AppData\\Local\\Temp"
    assert target.sha256 is not None


def test_malformed_machine_id_is_rejected_and_its_files_have_no_device() -> None:
    alert = _sample("single_alert.json")
    alert["machineId"] = "ws-ops-077"

    extraction = extract_document(alert, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("invalid_device_id", "machineId"),
        ("no_device", "evidence[0]"),
        ("no_device", "evidence[1]"),
    ]
    assert extraction.targets == ()


def test_evidence_with_a_malformed_sha1_is_rejected() -> None:
    alert = _sample("single_alert.json")
    alert["evidence"][0]["sha1"] = "8892711b041df3837aa39b66303b554b72f5109"

    extraction = extract_document(alert, source="m")

    assert [(r.reason, r.position) for r in extraction.rejections] == [
        ("invalid_sha1", "evidence[0].sha1")
    ]
    assert len(extraction.targets) == 1


def test_evidence_without_sha1_is_simply_not_a_target() -> None:
    alert = _sample("single_alert.json")
    alert["evidence"][0]["sha1"] = None

    extraction = extract_document(alert, source="m")

    assert extraction.rejections == ()
    assert len(extraction.targets) == 1


def test_read_only_document_from_the_api_is_read_like_any_other() -> None:
    """The client hands alert documents over as read-only mappings."""
    document = _sample("single_alert.json")

    extraction = extract_document(MappingProxyType(document), source="api")

    assert extraction.rejections == ()
    assert extraction.targets == extract_document(document, source="api").targets
