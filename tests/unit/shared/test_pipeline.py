"""The pipeline's own decisions: order of steps, duplicates, the device cap, deferral.

Defender is played by ``_RecordingApi``, an implementation of the pipeline's
``QuarantineApi`` protocol that records each call; the end-to-end tests against the
simulator live in tests/integration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.backlog import MemoryBacklog
from shared.errors import ApiAuthError, ApiResponseError, ApiThrottled
from shared.facts_cache import FactsCache
from shared.ledger import MemoryLedger
from shared.machine_actions import (
    MachineAction,
    MachineActionStatus,
    Submission,
    SubmissionOutcome,
)
from shared.pipeline import Message, Pipeline
from shared.settings import Settings
from shared.targets import DeviceFacts, FileFacts

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
FILE_SHA1 = "a" * 40
DEVICES = [f"{index:040x}" for index in range(1, 8)]


class _RecordingApi:
    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, str]] = []
        self.device_lookups: list[str] = []
        self.file_lookups: list[str] = []
        self.submit_error: Exception | None = None
        self.existing: Submission | None = None
        self.lookups_since: list[datetime] = []

    def device_facts(self, device_id: str) -> DeviceFacts | None:
        self.device_lookups.append(device_id)
        return DeviceFacts(
            device_id=device_id,
            os_platform="Windows11",
            os_build=22631,
            health_status="Active",
            onboarding_status="Onboarded",
            av_mode="0",
            source="api",
        )

    def file_facts(self, sha1: str) -> FileFacts | None:
        self.file_lookups.append(sha1)
        return FileFacts(sha1=sha1, source="api")

    def submit_quarantine(self, device_id: str, sha1: str, comment: str) -> Submission:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append((device_id, sha1, comment))
        action = MachineAction(
            id=f"00000000-0000-0000-0000-{len(self.submitted):012d}",
            action_type="StopAndQuarantineFile",
            status=MachineActionStatus.PENDING,
            raw_status="Pending",
            machine_id=device_id,
        )
        return Submission(SubmissionOutcome.CREATED, action)

    def find_submission(
        self, device_id: str, sha1: str, since: datetime
    ) -> Submission | None:
        self.lookups_since.append(since)
        return self.existing

    def alert_document(self, alert_id: str) -> Mapping[str, Any]:
        raise AssertionError("not used here")


def _pipeline(
    api: _RecordingApi,
    *,
    ledger: MemoryLedger | None = None,
    backlog: MemoryBacklog | None = None,
    now: datetime = NOW,
    **settings: str,
) -> Pipeline:
    environ = {"QUARANTINE_MODE": "enforce", "MIN_ALERT_SEVERITY": "low", **settings}
    return Pipeline(
        settings=Settings.from_env(environ),
        api=api,
        ledger=ledger or MemoryLedger(),
        facts_cache=FactsCache(ttl_seconds=3600),
        backlog=backlog or MemoryBacklog(now=lambda: now),
        now=lambda: now,
    )


def _alert(alert_id: str, device_ids: list[str], sha1: str = FILE_SHA1) -> Message:
    """A Defender API alert (the ``mde`` format) naming one file on each device."""
    documents = [
        {
            "id": f"{alert_id}_{index}",
            "title": "Malicious file",
            "severity": "High",
            "status": "New",
            "detectionSource": "WindowsDefenderAv",
            "machineId": device_id,
            "evidence": [
                {
                    "entityType": "File",
                    "sha1": sha1,
                    "fileName": "payload.exe",
                    "filePath": "C:\\Users\\Public",
                }
            ],
        }
        for index, device_id in enumerate(device_ids)
    ]
    return Message(body=json.dumps({"value": documents}), source=alert_id)


def test_eligible_target_is_submitted_once_with_a_comment_naming_the_alert() -> None:
    api = _RecordingApi()

    outcomes = _pipeline(api).run([_alert("da1", DEVICES[:1])])

    assert [(o.verdict, o.reason, o.submission) for o in outcomes] == [
        ("submit", "eligible", "created")
    ]
    assert outcomes[0].action_id is not None
    assert api.submitted == [
        (
            DEVICES[0],
            FILE_SHA1,
            "Stop and quarantine file on machine due to alert da1_0 "
            "(defender-quarantine)",
        )
    ]


def test_same_target_named_again_is_a_duplicate_not_a_second_submission() -> None:
    api = _RecordingApi()
    pipeline = _pipeline(api)

    pipeline.run([_alert("da1", DEVICES[:1])])
    again = pipeline.run([_alert("da2", DEVICES[:1])])

    assert [(o.verdict, o.reason) for o in again] == [("skip", "duplicate")]
    assert again[0].action_id is not None
    assert len(api.submitted) == 1


def test_dry_run_judges_with_facts_but_submits_nothing() -> None:
    api = _RecordingApi()

    outcomes = _pipeline(api).run([_alert("da1", DEVICES[:2])], dry_run=True)

    assert [(o.verdict, o.reason) for o in outcomes] == [("skip", "dry_run")] * 2
    assert api.submitted == []
    assert api.device_lookups == DEVICES[:2]
    assert outcomes[0].facts["os_platform"] == "Windows11"


def test_screened_target_costs_no_api_call() -> None:
    api = _RecordingApi()

    outcomes = _pipeline(api, EXCLUDED_SHA1S=FILE_SHA1).run(
        [_alert("da1", DEVICES[:1])]
    )

    assert [(o.verdict, o.reason) for o in outcomes] == [("skip", "excluded_sha1")]
    assert api.device_lookups == []
    assert api.file_lookups == []


def test_devices_beyond_the_cap_are_held_not_submitted() -> None:
    api = _RecordingApi()

    outcomes = _pipeline(api, MAX_DEVICES_PER_FILE_PER_HOUR="3").run(
        [_alert("da1", DEVICES[:5])]
    )

    assert [o.reason for o in outcomes] == ["eligible"] * 3 + ["device_cap_reached"] * 2
    assert len(api.submitted) == 3


def test_dry_run_counts_would_be_submissions_against_the_cap() -> None:
    api = _RecordingApi()

    outcomes = _pipeline(api, MAX_DEVICES_PER_FILE_PER_HOUR="2").run(
        [_alert("da1", DEVICES[:3])], dry_run=True
    )

    assert [o.reason for o in outcomes] == ["dry_run", "dry_run", "device_cap_reached"]


def test_throttled_submission_is_deferred_to_the_time_the_api_gave() -> None:
    api = _RecordingApi()
    retry_at = NOW + timedelta(seconds=42)
    api.submit_error = ApiThrottled(
        retry_at=retry_at,
        code="TooManyRequests",
        message="slow down",
        correlation_id=None,
        method="POST",
        route="machines/{id}/StopAndQuarantineFile",
    )

    outcomes = _pipeline(api).run([_alert("da1", DEVICES[:1])])

    assert [(o.verdict, o.reason, o.retry_at) for o in outcomes] == [
        ("defer", "api_throttled", retry_at)
    ]


def test_auth_failure_is_deferred_so_the_target_is_not_lost() -> None:
    api = _RecordingApi()
    api.submit_error = ApiAuthError(
        status=403,
        code="Forbidden",
        message="missing Machine.StopAndQuarantine",
        correlation_id="c-1",
        method="POST",
        route="machines/{id}/StopAndQuarantineFile",
    )

    outcomes = _pipeline(api).run([_alert("da1", DEVICES[:1])])

    assert [(o.verdict, o.reason) for o in outcomes] == [("defer", "api_auth_failed")]


def test_permanent_refusal_is_recorded_with_the_api_message() -> None:
    api = _RecordingApi()
    api.submit_error = ApiResponseError(
        status=404,
        code="ResourceNotFound",
        message="Sha1 was not found in machine",
        correlation_id="c-2",
        method="POST",
        route="machines/{id}/StopAndQuarantineFile",
    )

    outcomes = _pipeline(api).run([_alert("da1", DEVICES[:1])])

    assert [(o.verdict, o.submission) for o in outcomes] == [("submit", "failed")]
    assert outcomes[0].error == "ResourceNotFound: Sha1 was not found in machine"


def test_malformed_message_beside_good_ones_is_rejected_alone() -> None:
    api = _RecordingApi()
    messages = [
        _alert("da1", DEVICES[:1]),
        Message(body=b"{not json", source="poison"),
        _alert("da2", DEVICES[1:2]),
    ]

    outcomes = _pipeline(api).run(messages)

    assert sorted((o.verdict, o.source) for o in outcomes) == [
        ("rejected", "poison"),
        ("submit", "da1"),
        ("submit", "da2"),
    ]


@pytest.mark.parametrize("dry_run", [True, False])
def test_outcomes_serialise_to_json(dry_run: bool) -> None:
    outcomes = _pipeline(_RecordingApi()).run(
        [_alert("da1", DEVICES[:1])], dry_run=dry_run
    )

    document = json.loads(json.dumps([o.to_json() for o in outcomes]))

    assert document[0]["alert_id"] == "da1_0"
    assert document[0]["device_id"] == DEVICES[0]
