"""The Event Hub function end to end: worker-decoded batches, simulator over HTTP."""

from __future__ import annotations

import pytest
import requests

from functions.alert_stream import handle_alert_events
from shared.errors import SettingsError
from simulator import RunningSimulator
from simulator.demo import (
    DEVICE_MACOS,
    DEVICE_SERVER_2019,
    DEVICE_WIN10,
    DEVICE_WIN10_1607,
    DEVICE_WIN10_AV_DISABLED,
    DEVICE_WIN10_AV_OTHER,
    DEVICE_WIN11,
    FILE_MICROSOFT_SIGNED,
    FILE_THIRD_PARTY,
    FILE_TRUSTED_PUBLISHER,
    FILE_UNSIGNED,
    TRUSTED_PUBLISHER,
)
from tests.integration.functions.conftest import (
    AppSettings,
    event_batch,
    streaming_message,
)

pytestmark = pytest.mark.integration

ALERT = "da638400000000000001_1"


def _submissions(simulator: RunningSimulator) -> list[tuple[str | None, str | None]]:
    return [
        (logged.machine_id, logged.sha1)
        for logged in simulator.request_log()
        if logged.method == "POST" and logged.path.endswith("/StopAndQuarantineFile")
    ]


def test_eligible_target_is_submitted_once_with_a_comment_naming_the_alert(
    app_settings: AppSettings, simulator: RunningSimulator, full_token: str
) -> None:
    body = streaming_message((DEVICE_WIN10, FILE_UNSIGNED), alert_id=ALERT)

    first = handle_alert_events(event_batch(body))
    redelivered = handle_alert_events(event_batch(body))

    assert [(o.verdict, o.submission) for o in first] == [("submit", "created")]
    assert [(o.verdict, o.reason) for o in redelivered] == [("skip", "duplicate")]
    assert _submissions(simulator) == [(DEVICE_WIN10, FILE_UNSIGNED)]

    answer = requests.get(
        f"{simulator.base_url}/api/machineactions/{first[0].action_id}",
        headers={"Authorization": f"Bearer {full_token}"},
        timeout=5,
    )
    assert answer.json()["requestorComment"] == (
        f"Stop and quarantine file on machine due to alert {ALERT} "
        "(defender-quarantine)"
    )


@pytest.mark.parametrize(
    ("device_id", "sha1", "reason"),
    [
        (DEVICE_WIN10_1607, FILE_UNSIGNED, "os_build_too_old"),
        (DEVICE_MACOS, FILE_UNSIGNED, "os_platform_not_supported"),
        (DEVICE_SERVER_2019, FILE_UNSIGNED, "windows_server_not_allowed"),
        (DEVICE_WIN10_AV_DISABLED, FILE_UNSIGNED, "av_disabled"),
        (DEVICE_WIN10_AV_OTHER, FILE_UNSIGNED, "av_mode_unknown"),
        (DEVICE_WIN10, FILE_MICROSOFT_SIGNED, "microsoft_signed"),
        (DEVICE_WIN10, FILE_TRUSTED_PUBLISHER, "trusted_publisher"),
    ],
)
def test_ineligible_target_is_skipped_with_its_reason(
    app_settings: AppSettings,
    simulator: RunningSimulator,
    device_id: str,
    sha1: str,
    reason: str,
) -> None:
    app_settings(TRUSTED_PUBLISHERS=TRUSTED_PUBLISHER)

    outcomes = handle_alert_events(event_batch(streaming_message((device_id, sha1))))

    assert [(o.verdict, o.reason) for o in outcomes] == [("skip", reason)]
    assert _submissions(simulator) == []


def test_low_severity_alert_is_skipped_without_any_api_call(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    body = streaming_message((DEVICE_WIN10, FILE_UNSIGNED), severity="Low")

    outcomes = handle_alert_events(event_batch(body))

    assert [(o.verdict, o.reason) for o in outcomes] == [("skip", "below_min_severity")]
    assert simulator.request_log() == []


def test_dry_run_judges_every_target_and_submits_nothing(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    app_settings(QUARANTINE_MODE="dry-run")
    body = streaming_message(
        (DEVICE_WIN10, FILE_UNSIGNED), (DEVICE_WIN11, FILE_THIRD_PARTY)
    )

    outcomes = handle_alert_events(event_batch(body))

    assert [(o.verdict, o.reason) for o in outcomes] == [("skip", "dry_run")] * 2
    assert _submissions(simulator) == []


def test_poison_event_beside_good_ones_leaves_the_good_ones_processed(
    app_settings: AppSettings, simulator: RunningSimulator
) -> None:
    good_first = streaming_message((DEVICE_WIN10, FILE_UNSIGNED), alert_id="da1_1")
    poison = b"{records: not json}"
    good_last = streaming_message((DEVICE_WIN11, FILE_THIRD_PARTY), alert_id="da2_1")

    outcomes = handle_alert_events(
        event_batch(good_first, poison, good_last, partition="3")
    )

    assert sorted((o.verdict, o.submission or o.reason) for o in outcomes) == [
        ("rejected", "not_json"),
        ("submit", "created"),
        ("submit", "created"),
    ]
    rejected = next(o for o in outcomes if o.verdict == "rejected")
    assert rejected.source == "partition 3 sequence 101"
    assert sorted(_submissions(simulator)) == sorted(
        [(DEVICE_WIN10, FILE_UNSIGNED), (DEVICE_WIN11, FILE_THIRD_PARTY)]
    )


def test_invalid_settings_raise_so_the_host_retries_instead_of_skipping(
    app_settings: AppSettings,
) -> None:
    app_settings(QUARANTINE_MODE="sometimes")

    with pytest.raises(SettingsError, match="QUARANTINE_MODE"):
        handle_alert_events(
            event_batch(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))
        )
