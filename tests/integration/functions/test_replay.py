"""The replay function end to end: real HttpRequest objects, the simulator over HTTP."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from functions.replay import handle_replay
from simulator import RunningSimulator
from simulator.demo import ALERT_UNSIGNED, DEVICE_WIN10, DEVICE_WIN11, FILE_UNSIGNED
from tests.integration.functions.conftest import AppSettings, streaming_message

pytestmark = pytest.mark.integration


def _post(body: bytes, **params: str) -> func.HttpResponse:
    request = func.HttpRequest(
        "POST",
        "https://contoso.azurewebsites.net/api/replay",
        headers={"content-type": "application/json"},
        params=params,
        body=body,
    )
    return handle_replay(request)


def _json(response: func.HttpResponse) -> Any:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


def _posts(simulator: RunningSimulator) -> int:
    return sum(
        1
        for logged in simulator.request_log()
        if logged.method == "POST" and logged.path.endswith("/StopAndQuarantineFile")
    )


def test_alert_body_is_run_and_answered_with_its_outcomes(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    response = _post(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))

    assert response.status_code == 200
    outcomes = _json(response)["outcomes"]
    assert [(o["verdict"], o["submission"]) for o in outcomes] == [
        ("submit", "created")
    ]
    assert outcomes[0]["action_id"]
    assert _posts(simulator) == 1


def test_alert_id_is_fetched_from_defender_with_its_evidence(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    response = _post(json.dumps({"alertId": ALERT_UNSIGNED}).encode(), dryRun="true")

    assert response.status_code == 200
    outcomes = _json(response)["outcomes"]
    assert {o["alert_id"] for o in outcomes} == {ALERT_UNSIGNED}
    assert {o["reason"] for o in outcomes} == {"dry_run"}
    assert (DEVICE_WIN11, FILE_UNSIGNED) in {
        (o["device_id"], o["sha1"]) for o in outcomes
    }
    assert any(
        logged.path == f"/api/alerts/{ALERT_UNSIGNED}"
        for logged in simulator.request_log()
    )
    assert _posts(simulator) == 0


def test_dry_run_parameter_overrides_an_enforcing_app(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    response = _post(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)), dryRun="true")

    assert response.status_code == 200
    assert [o["reason"] for o in _json(response)["outcomes"]] == ["dry_run"]
    assert _posts(simulator) == 0


def test_enforce_parameter_overrides_a_dry_run_app(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    app_settings(QUARANTINE_MODE="dry-run")

    response = _post(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)), dryRun="false")

    assert response.status_code == 200
    assert _posts(simulator) == 1


@pytest.mark.parametrize(
    ("body", "params", "status", "message"),
    [
        (b"{not json", {}, 400, "no readable alert"),
        (b'{"unexpected": "shape"}', {}, 400, "no readable alert"),
        (b'{"alertId": "../machines/x"}', {}, 400, "alertId must be"),
        (b'{"alertId": 42}', {}, 400, "alertId must be"),
        (b'{"alertId": "da999999999999999999_1"}', {}, 404, "knows no alert"),
        (b"{}", {"dryRun": "maybe"}, 400, "dryRun must be"),
    ],
)
def test_bad_input_gets_a_clear_error(
    app_settings: AppSettings,
    simulator: RunningSimulator,
    body: bytes,
    params: dict[str, str],
    status: int,
    message: str,
) -> None:
    response = _post(body, **params)

    assert response.status_code == status
    assert message in _json(response)["error"]
    assert _posts(simulator) == 0


def test_body_above_the_limit_is_refused_with_413(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    app_settings(REPLAY_MAX_BODY_BYTES="100")

    response = _post(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))

    assert response.status_code == 413
    assert simulator.request_log() == []
