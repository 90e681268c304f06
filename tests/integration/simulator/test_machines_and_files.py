"""GET machines/{id}, files/{hash} and deviceavinfo."""

from __future__ import annotations

import pytest

from simulator import RunningSimulator
from simulator.demo import (
    DEVICE_INACTIVE,
    DEVICE_MACOS,
    DEVICE_WIN10,
    DEVICE_WIN10_AV_PASSIVE,
    DEVICE_WIN10_AV_UNREPORTED,
    FILE_INVALID_CERTIFICATE,
    FILE_MICROSOFT_SIGNED,
    FILE_UNSIGNED,
    UNKNOWN_SHA1,
)
from tests.integration.simulator.client import Api, error_code, error_message

pytestmark = pytest.mark.integration


def test_machine_answers_documented_and_live_fields(api: Api) -> None:
    response = api.get(f"machines/{DEVICE_WIN10}")

    assert response.status_code == 200
    machine = response.json()
    assert machine["@odata.context"].endswith("#Machines/$entity")
    assert machine["id"] == DEVICE_WIN10
    assert machine["osPlatform"] == "Windows10"
    assert machine["osBuild"] == 19045
    assert machine["version"] == "22H2"
    assert machine["healthStatus"] == "Active"
    assert machine["onboardingStatus"] == "Onboarded"
    assert machine["defenderAvStatus"] == "Updated"
    assert machine["machineTags"] == ["demo"]
    assert "avMode" not in machine


def test_machine_found_by_computer_name(api: Api) -> None:
    response = api.get("machines/WIN10-22H2.contoso.test")

    assert response.status_code == 200
    assert response.json()["id"] == DEVICE_WIN10


def test_machine_without_build_reports_null_build(api: Api) -> None:
    machine = api.get(f"machines/{DEVICE_MACOS}").json()

    assert machine["osPlatform"] == "macOS"
    assert machine["osBuild"] is None


def test_machine_reports_health_changes(api: Api, simulator: RunningSimulator) -> None:
    simulator.set_device_health(DEVICE_INACTIVE, "Active")

    machine = api.get(f"machines/{DEVICE_INACTIVE}").json()

    assert machine["healthStatus"] == "Active"


@pytest.mark.parametrize("machine_id", ["0" * 40, "no-such-host"])
def test_unknown_machine_is_resource_not_found(api: Api, machine_id: str) -> None:
    response = api.get(f"machines/{machine_id}")

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"
    assert error_message(response) == f"Machine {machine_id} was not found"


def test_file_answers_signature_facts(api: Api) -> None:
    response = api.get(f"files/{FILE_MICROSOFT_SIGNED}")

    assert response.status_code == 200
    record = response.json()
    assert record["@odata.context"].endswith("#Files/$entity")
    assert record["sha1"] == FILE_MICROSOFT_SIGNED
    assert record["signer"] == "Microsoft Windows"
    assert record["issuer"] == "Microsoft Windows Production PCA 2011"
    assert record["filePublisher"] == "Microsoft Corporation"
    assert record["isValidCertificate"] is True
    assert record["signerHash"]


def test_file_found_by_sha256(api: Api) -> None:
    sha256 = api.get(f"files/{FILE_INVALID_CERTIFICATE}").json()["sha256"]

    response = api.get(f"files/{sha256.upper()}")

    assert response.status_code == 200
    assert response.json()["sha1"] == FILE_INVALID_CERTIFICATE
    assert response.json()["isValidCertificate"] is False


def test_unsigned_file_has_no_signer(api: Api) -> None:
    record = api.get(f"files/{FILE_UNSIGNED}").json()

    assert record["signer"] is None
    assert record["isValidCertificate"] is False


def test_unknown_file_is_resource_not_found(api: Api) -> None:
    response = api.get(f"files/{UNKNOWN_SHA1}")

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"


@pytest.mark.parametrize("bad_hash", ["abc", "0" * 32, "g" * 40])
def test_malformed_file_hash_is_invalid_hash_value(api: Api, bad_hash: str) -> None:
    response = api.get(f"files/{bad_hash}")

    assert response.status_code == 400
    assert error_code(response) == "InvalidHashValue"


def test_deviceavinfo_filtered_on_machine_answers_its_av_mode_as_string(
    api: Api,
) -> None:
    response = api.get(
        "deviceavinfo", params={"$filter": f"machineId eq '{DEVICE_WIN10_AV_PASSIVE}'"}
    )

    assert response.status_code == 200
    page = response.json()
    assert page["@odata.context"].endswith("#DeviceAvInfo")
    [row] = page["value"]
    assert row["machineId"] == DEVICE_WIN10_AV_PASSIVE
    assert row["avMode"] == "1"


def test_deviceavinfo_reports_empty_av_mode_as_empty_string(api: Api) -> None:
    response = api.get(
        "deviceavinfo",
        params={"$filter": f"machineId eq '{DEVICE_WIN10_AV_UNREPORTED}'"},
    )

    assert response.json()["value"][0]["avMode"] == ""


def test_deviceavinfo_covers_every_av_mode(api: Api) -> None:
    rows = api.get("deviceavinfo").json()["value"]

    assert {row["avMode"] for row in rows} == {"", "0", "1", "2", "3", "4", "5"}


def test_deviceavinfo_filter_can_combine_clauses(api: Api) -> None:
    response = api.get(
        "deviceavinfo", params={"$filter": "avMode eq '0' and osKind eq 'mac'"}
    )

    [row] = response.json()["value"]
    assert row["machineId"] == DEVICE_MACOS


def test_deviceavinfo_pages_with_next_link(api: Api) -> None:
    first = api.get("deviceavinfo", params={"$top": "5"}).json()
    unpaged = api.get("deviceavinfo").json()
    second = api.get("deviceavinfo", params={"$top": "5", "$skip": "5"}).json()

    assert len(first["value"]) == 5
    assert "@odata.nextLink" not in first
    assert first["value"] + second["value"] == unpaged["value"][:10]


def test_deviceavinfo_with_unknown_filter_property_is_odata_error(api: Api) -> None:
    response = api.get("deviceavinfo", params={"$filter": "avStatus eq 'x'"})

    assert response.status_code == 400
    assert error_code(response) == "ODataError"
