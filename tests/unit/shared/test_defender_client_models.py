"""Reading Defender's answers into typed values, and converting them to policy facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.defender_models import (
    UnexpectedShapeError,
    parse_alert_document,
    parse_av_info,
    parse_file_profile,
    parse_machine,
)
from shared.machine_actions import MachineActionStatus, parse_machine_action
from shared.targets import DeviceFacts, FileFacts

DEVICE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"

# The 2019 documentation example of a 201 answer, as published.
DOC_ACTION: dict[str, Any] = {
    "@odata.context": "https://api.securitycenter.windows.com/api/$metadata#MachineActions/$entity",
    "id": "141408d1-384c-4c19-8b57-ba39e378011a",
    "type": "StopAndQuarantineFile",
    "requestor": "Analyst@contoso.com ",
    "requestorComment": "Stop and quarantine file on machine due to alert "
    "441688558380765161_2136280442",
    "status": "InProgress",
    "machineId": DEVICE,
    "creationDateTimeUtc": "2018-12-04T12:15:04.3825985Z",
    "lastUpdateTimeUtc": "2018-12-04T12:15:04.3825985Z",
    "relatedFileInfo": {"fileIdentifier": SHA1, "fileIdentifierType": "Sha1"},
}

# The shape live tenants return (field names as captured by public integrations).
LIVE_ACTION: dict[str, Any] = {
    "cancellationComment": None,
    "cancellationDateTimeUtc": None,
    "commands": [],
    "computerDnsName": None,
    "creationDateTimeUtc": "2020-03-20T14:21:49.9097785Z",
    "errorHResult": 0,
    "id": "7f2c1b7e-0c8e-4a8e-9a43-0c5d1a3e9b21",
    "lastUpdateDateTimeUtc": "2020-03-20T14:25:00Z",
    "machineId": DEVICE.upper(),
    "relatedFileInfo": {"fileIdentifier": SHA1.upper(), "fileIdentifierType": "Sha1"},
    "requestor": "123abc",
    "requestorComment": "Test",
    "scope": None,
    "status": "Pending",
    "type": "StopAndQuarantineFile",
}


def test_documented_action_is_read_with_last_update_time_utc() -> None:
    action = parse_machine_action(DOC_ACTION)

    assert action.id == "141408d1-384c-4c19-8b57-ba39e378011a"
    assert action.status is MachineActionStatus.IN_PROGRESS
    assert action.is_open
    assert not action.is_final
    assert action.created == datetime(2018, 12, 4, 12, 15, 4, 382598, tzinfo=UTC)
    assert action.last_updated == action.created
    assert action.file_identifier == SHA1
    assert action.concerns_file(SHA1.upper())


def test_live_action_is_read_with_last_update_date_time_utc() -> None:
    action = parse_machine_action(LIVE_ACTION)

    assert action.status is MachineActionStatus.PENDING
    assert action.last_updated == datetime(2020, 3, 20, 14, 25, tzinfo=UTC)
    assert action.machine_id == DEVICE
    assert action.error_hresult == 0
    assert action.concerns_file(SHA1)
    assert not action.concerns_file("0" * 40)


@pytest.mark.parametrize(
    ("raw", "status", "final"),
    [
        ("Succeeded", MachineActionStatus.SUCCEEDED, True),
        ("succeeded", MachineActionStatus.SUCCEEDED, True),
        ("FAILED", MachineActionStatus.FAILED, True),
        ("TimeOut", MachineActionStatus.TIMEOUT, True),
        ("Cancelled", MachineActionStatus.CANCELLED, True),
        ("Canceled", MachineActionStatus.CANCELLED, True),
        ("inProgress", MachineActionStatus.IN_PROGRESS, False),
        ("Pending", MachineActionStatus.PENDING, False),
        ("PartiallySucceeded", MachineActionStatus.UNKNOWN, False),
        ("", MachineActionStatus.UNKNOWN, False),
    ],
)
def test_action_status_in_any_case_and_unknown_values(
    raw: str, status: MachineActionStatus, final: bool
) -> None:
    action = parse_machine_action({**LIVE_ACTION, "status": raw})

    assert action.status is status
    assert action.is_final is final
    assert action.raw_status == raw


def test_action_with_non_string_status_is_unknown_not_a_crash() -> None:
    action = parse_machine_action({**LIVE_ACTION, "status": 3, "relatedFileInfo": None})

    assert action.status is MachineActionStatus.UNKNOWN
    assert action.file_identifier is None
    assert not action.concerns_file(SHA1)


@pytest.mark.parametrize("document", [{"status": "Pending"}, {"id": ""}, [], None])
def test_action_without_id_is_an_unexpected_shape(document: object) -> None:
    with pytest.raises(UnexpectedShapeError):
        parse_machine_action(document)


MACHINE: dict[str, Any] = {
    "id": DEVICE,
    "computerDnsName": "mymachine1.contoso.com",
    "osPlatform": "Windows10",
    "osVersion": None,
    "version": "21H2",
    "osBuild": None,
    "healthStatus": "active",
    "onboardingstatus": "onboarded",
    "defenderAvStatus": "Updated",
    "machineTags": ["test tag 1", 7, "finance"],
    "lastSeen": "2023-04-18T13:01:26.0294235",
}


def test_machine_accepts_lower_case_field_and_values() -> None:
    machine = parse_machine(MACHINE)

    assert machine.onboarding_status == "Onboarded"
    assert machine.health_status == "Active"
    assert machine.os_build is None
    assert machine.machine_tags == ("test tag 1", "finance")
    assert machine.last_seen == datetime(2023, 4, 18, 13, 1, 26, 29423, tzinfo=UTC)


def test_machine_keeps_unknown_enum_values_as_spelled() -> None:
    machine = parse_machine(
        {**MACHINE, "onboardingStatus": "SomethingNew", "healthStatus": "Dormant"}
    )

    assert machine.onboarding_status == "SomethingNew"
    assert machine.health_status == "Dormant"


def test_machine_prefers_camel_case_onboarding_status() -> None:
    machine = parse_machine({**MACHINE, "onboardingStatus": "CanBeOnboarded"})

    assert machine.onboarding_status == "CanBeOnboarded"


def test_machine_becomes_api_device_facts_with_antivirus_mode_merged() -> None:
    machine = parse_machine(MACHINE)
    av_info = parse_av_info(
        {"machineId": DEVICE, "avMode": "1", "osVersion": "10.0.19044.1865"}
    )

    facts = machine.to_device_facts(av_info)

    assert facts == DeviceFacts(
        device_id=DEVICE,
        os_platform="Windows10",
        os_build=19044,
        os_version="21H2",
        health_status="Active",
        onboarding_status="Onboarded",
        av_mode="1",
        machine_tags=("test tag 1", "finance"),
        device_name="mymachine1.contoso.com",
        source="api",
    )


def test_machine_build_wins_over_antivirus_report_version() -> None:
    machine = parse_machine({**MACHINE, "osBuild": 22631})
    av_info = parse_av_info({"machineId": DEVICE, "avMode": 0, "osVersion": "10.0.1.2"})

    facts = machine.to_device_facts(av_info)

    assert facts.os_build == 22631
    assert facts.av_mode == "0"


def test_machine_without_antivirus_report_has_unknown_mode() -> None:
    facts = parse_machine(MACHINE).to_device_facts()

    assert facts.av_mode is None
    assert facts.os_build is None
    assert facts.source == "api"


@pytest.mark.parametrize(
    ("raw", "mode"), [("0", "0"), (1, "1"), ("", ""), (None, None), (True, None)]
)
def test_antivirus_mode_as_string_or_number(raw: object, mode: str | None) -> None:
    av_info = parse_av_info({"machineId": DEVICE, "avMode": raw})

    assert av_info.av_mode == mode


def test_machine_with_id_that_is_not_40_hex_is_an_unexpected_shape() -> None:
    with pytest.raises(UnexpectedShapeError, match="id"):
        parse_machine({**MACHINE, "id": "../etc"})


FILE: dict[str, Any] = {
    "sha1": SHA1.upper(),
    "sha256": "F3A1" * 16,
    "globalPrevalence": 180022,
    "size": "22139496",
    "fileType": "APP",
    "isPeFile": True,
    "filePublisher": "CHENGDU YIWO Tech Development Co., Ltd.",
    "signer": "CHENGDU YIWO Tech Development Co., Ltd.",
    "issuer": "VeriSign Class 3 Code Signing 2010 CA",
    "isValidCertificate": False,
    "determinationType": "Pua",
}


def test_file_becomes_api_file_facts() -> None:
    profile = parse_file_profile(FILE)

    assert profile.sha1 == SHA1
    assert profile.size == 22139496
    assert profile.to_file_facts() == FileFacts(
        sha1=SHA1,
        signer="CHENGDU YIWO Tech Development Co., Ltd.",
        issuer="VeriSign Class 3 Code Signing 2010 CA",
        file_publisher="CHENGDU YIWO Tech Development Co., Ltd.",
        is_valid_certificate=False,
        source="api",
    )


def test_file_with_unknown_certificate_validity_stays_unknown() -> None:
    profile = parse_file_profile({"sha1": SHA1, "isValidCertificate": None})

    assert profile.is_valid_certificate is None
    assert profile.signer is None


def test_alert_document_is_kept_whole_and_read_only() -> None:
    raw = {"id": "da637472900382838869_1364969609", "evidence": [{"sha1": SHA1}]}

    alert = parse_alert_document(raw)

    assert alert.id == "da637472900382838869_1364969609"
    assert alert.document == raw
    with pytest.raises(TypeError):
        alert.document["id"] = "changed"  # type: ignore[index]
