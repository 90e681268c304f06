"""GET alerts/{id} with and without evidence, and POST indicators."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import RunningSimulator
from simulator.demo import (
    ALERT_THIRD_PARTY,
    DEVICE_WIN10,
    FILE_MICROSOFT_SIGNED,
    FILE_THIRD_PARTY,
    FILE_UNSIGNED,
)
from tests.integration.simulator.client import Api, error_code, error_message

pytestmark = pytest.mark.integration


def test_alert_expanded_with_evidence_names_files_and_device(api: Api) -> None:
    response = api.get(f"alerts/{ALERT_THIRD_PARTY}", params={"$expand": "evidence"})

    assert response.status_code == 200
    alert = response.json()
    assert alert["id"] == ALERT_THIRD_PARTY
    assert alert["machineId"] == DEVICE_WIN10
    assert alert["severity"] == "High"
    evidence = [(e["entityType"], e["sha1"]) for e in alert["evidence"]]
    assert evidence == [
        ("File", FILE_THIRD_PARTY),
        ("Process", FILE_MICROSOFT_SIGNED),
        ("User", None),
    ]
    assert alert["evidence"][0]["sha256"]


def test_alert_without_expand_answers_empty_evidence(api: Api) -> None:
    response = api.get(f"alerts/{ALERT_THIRD_PARTY}")

    assert response.status_code == 200
    assert response.json()["evidence"] == []


def test_alert_expanding_something_else_is_odata_error(api: Api) -> None:
    response = api.get(f"alerts/{ALERT_THIRD_PARTY}", params={"$expand": "comments"})

    assert response.status_code == 400
    assert error_code(response) == "ODataError"


def test_unknown_alert_is_resource_not_found(api: Api) -> None:
    response = api.get("alerts/da000000000000000000_0000000000")

    assert response.status_code == 404
    assert error_code(response) == "ResourceNotFound"


def _indicator(**changes: Any) -> dict[str, Any]:
    body = {
        "indicatorValue": FILE_UNSIGNED,
        "indicatorType": "FileSha1",
        "action": "BlockAndRemediate",
        "title": "Block payload.exe",
        "description": "Named by alert da1_2",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def test_indicator_submission_answers_200_with_the_indicator(
    api: Api, simulator: RunningSimulator
) -> None:
    response = api.post("indicators", _indicator(severity="High"))

    assert response.status_code == 200
    indicator = response.json()
    assert indicator["indicatorValue"] == FILE_UNSIGNED
    assert indicator["indicatorType"] == "FileSha1"
    assert indicator["action"] == "BlockAndRemediate"
    assert indicator["severity"] == "High"
    assert indicator["sourceType"] == "AadApp"
    assert simulator.request_log()[-1].sha1 == FILE_UNSIGNED


def test_indicator_resubmitted_updates_the_same_indicator(api: Api) -> None:
    first = api.post("indicators", _indicator()).json()

    second = api.post("indicators", _indicator(action="Audit", generateAlert=True))

    assert second.json()["id"] == first["id"]
    assert second.json()["action"] == "Audit"


@pytest.mark.parametrize(
    "missing", ["indicatorValue", "indicatorType", "action", "title", "description"]
)
def test_indicator_without_required_parameter_names_it(api: Api, missing: str) -> None:
    response = api.post("indicators", _indicator(**{missing: None}))

    assert response.status_code == 400
    assert error_code(response) == "MissingRequiredParameter"
    assert error_message(response) == f"Parameter {missing} is missing."


@pytest.mark.parametrize(
    "changes",
    [
        {"indicatorType": "Sha1"},
        {"action": "Quarantine"},
        {"severity": "Critical"},
        {"action": "Audit"},
        {"generateAlert": "yes"},
    ],
)
def test_indicator_with_invalid_value_is_invalid_input(
    api: Api, changes: dict[str, Any]
) -> None:
    response = api.post("indicators", _indicator(**changes))

    assert response.status_code == 400
    assert error_code(response) == "InvalidInput"


def test_indicator_with_hash_of_wrong_length_is_invalid_hash_value(api: Api) -> None:
    response = api.post("indicators", _indicator(indicatorType="FileSha256"))

    assert response.status_code == 400
    assert error_code(response) == "InvalidHashValue"
