"""The pipeline with its state: claims, the backlog, recovery, bounded resubmission.

In-memory ledger and backlog here; the same contracts on Azure Storage (Azurite)
are exercised in tests/integration.
"""

from __future__ import annotations

from datetime import timedelta

from shared.backlog import DeferredTarget, MemoryBacklog
from shared.errors import ApiOutcomeUnknown, ApiResponseError, ApiThrottled
from shared.ledger import CLAIM_SECONDS, MemoryLedger
from shared.machine_actions import (
    MachineAction,
    MachineActionStatus,
    Submission,
    SubmissionOutcome,
)
from tests.unit.shared.test_pipeline import (
    DEVICES,
    FILE_SHA1,
    NOW,
    _alert,
    _pipeline,
    _RecordingApi,
)

_ROUTE = "machines/{id}/StopAndQuarantineFile"


def _throttled(seconds: int) -> ApiThrottled:
    return ApiThrottled(
        retry_at=NOW + timedelta(seconds=seconds),
        code="TooManyRequests",
        message="Rate limit is exceeded.",
        correlation_id=None,
        method="POST",
        route=_ROUTE,
    )


def _unavailable() -> ApiResponseError:
    return ApiResponseError(
        status=503,
        code="ServiceUnavailable",
        message="try later",
        correlation_id=None,
        method="POST",
        route=_ROUTE,
    )


def test_deferred_target_waits_in_the_backlog_until_the_time_the_api_gave() -> None:
    api = _RecordingApi()
    api.submit_error = _throttled(42)
    backlog = MemoryBacklog(now=lambda: NOW)

    outcomes = _pipeline(api, backlog=backlog).run([_alert("da1", DEVICES[:1])])

    assert [(o.verdict, o.backlog) for o in outcomes] == [("defer", "queued")]
    [item] = backlog.items()
    assert (item.target.device_id, item.target.sha1) == (DEVICES[0], FILE_SHA1)
    assert item.retry_at == NOW + timedelta(seconds=42)
    assert item.reason == "api_throttled"
    assert item.attempts == 0  # waiting for budget uses up no attempt


def test_deferred_target_is_submitted_when_it_comes_back() -> None:
    api = _RecordingApi()
    api.submit_error = _throttled(42)
    ledger = MemoryLedger()
    backlog = MemoryBacklog(now=lambda: NOW)
    _pipeline(api, ledger=ledger, backlog=backlog).run([_alert("da1", DEVICES[:1])])

    api.submit_error = None
    later = _pipeline(api, ledger=ledger, now=NOW + timedelta(minutes=1))
    outcome = later.run_deferred(backlog.items()[0])

    assert (outcome.verdict, outcome.submission) == ("submit", "created")
    assert len(api.submitted) == 1
    entry = ledger.find(DEVICES[0], FILE_SHA1)
    assert entry is not None
    assert entry.action_id == outcome.action_id


def test_a_target_that_keeps_failing_goes_to_the_poison_queue_with_its_reason() -> None:
    api = _RecordingApi()
    api.submit_error = _unavailable()
    backlog = MemoryBacklog(now=lambda: NOW)
    pipeline = _pipeline(api, backlog=backlog, BACKLOG_MAX_ATTEMPTS="2")

    pipeline.run([_alert("da1", DEVICES[:1])])
    for _ in range(2):
        latest: DeferredTarget = backlog.items()[-1]
        outcome = pipeline.run_deferred(latest)

    assert [item.attempts for item in backlog.items()] == [1, 2]
    assert outcome.backlog == "poisoned"
    [poisoned] = backlog.poisoned()
    assert poisoned.reason.startswith(
        "attempts_exhausted: 3 tries, last api_unavailable"
    )
    assert DeferredTarget.from_message(poisoned.body).target.device_id == DEVICES[0]


def test_a_target_another_instance_is_submitting_waits_for_its_claim() -> None:
    api = _RecordingApi()
    ledger = MemoryLedger()
    ledger.claim(
        device_id=DEVICES[0], sha1=FILE_SHA1, alert_id="x", at=NOW, max_submissions=3
    )

    outcomes = _pipeline(api, ledger=ledger).run([_alert("da1", DEVICES[:1])])

    assert [(o.verdict, o.reason) for o in outcomes] == [("defer", "claimed_elsewhere")]
    assert outcomes[0].retry_at == NOW + timedelta(seconds=CLAIM_SECONDS)
    assert api.submitted == []


def test_a_claim_left_by_a_crash_is_resolved_from_defender_not_resubmitted() -> None:
    """Claimed, submitted, then the process died before recording the action."""
    api = _RecordingApi()
    ledger = MemoryLedger()
    ledger.claim(
        device_id=DEVICES[0], sha1=FILE_SHA1, alert_id="x", at=NOW, max_submissions=3
    )
    api.existing = Submission(
        SubmissionOutcome.CREATED,
        MachineAction(
            id="11111111-1111-1111-1111-111111111111",
            action_type="StopAndQuarantineFile",
            status=MachineActionStatus.PENDING,
            raw_status="Pending",
            machine_id=DEVICES[0],
        ),
    )
    later = NOW + timedelta(seconds=CLAIM_SECONDS + 1)

    outcomes = _pipeline(api, ledger=ledger, now=later).run(
        [_alert("da1", DEVICES[:1])]
    )

    assert [(o.verdict, o.submission) for o in outcomes] == [
        ("submit", "recovered_after_unknown")
    ]
    assert api.lookups_since == [NOW]
    assert api.submitted == []
    entry = ledger.find(DEVICES[0], FILE_SHA1)
    assert entry is not None
    assert entry.action_id == "11111111-1111-1111-1111-111111111111"


def test_a_stale_claim_with_no_action_in_defender_is_submitted() -> None:
    api = _RecordingApi()
    ledger = MemoryLedger()
    ledger.claim(
        device_id=DEVICES[0], sha1=FILE_SHA1, alert_id="x", at=NOW, max_submissions=3
    )
    later = NOW + timedelta(seconds=CLAIM_SECONDS + 1)

    outcomes = _pipeline(api, ledger=ledger, now=later).run(
        [_alert("da1", DEVICES[:1])]
    )

    assert [(o.verdict, o.submission) for o in outcomes] == [("submit", "created")]
    assert len(api.submitted) == 1


def test_a_lost_answer_makes_the_next_attempt_look_before_it_submits() -> None:
    api = _RecordingApi()
    api.submit_error = ApiOutcomeUnknown("sent, no answer")
    ledger = MemoryLedger()
    backlog = MemoryBacklog(now=lambda: NOW)
    pipeline = _pipeline(api, ledger=ledger, backlog=backlog)

    first = pipeline.run([_alert("da1", DEVICES[:1])])
    api.submit_error = None
    second = pipeline.run_deferred(backlog.items()[0])

    assert [(o.verdict, o.reason) for o in first] == [("defer", "api_outcome_unknown")]
    assert api.lookups_since == [NOW]
    assert (second.verdict, second.submission) == ("submit", "created")


def test_resubmission_after_a_failed_action_is_bounded() -> None:
    api = _RecordingApi()
    ledger = MemoryLedger()
    pipeline = _pipeline(api, ledger=ledger, MAX_SUBMISSIONS_PER_TARGET="2")

    reasons = []
    for index in range(3):
        [outcome] = pipeline.run([_alert(f"da{index}", DEVICES[:1])])
        reasons.append(outcome.submission or outcome.reason)
        if outcome.action_id:
            ledger.record_action_status(
                device_id=DEVICES[0],
                sha1=FILE_SHA1,
                action_id=outcome.action_id,
                status="Failed",
                at=NOW,
            )

    assert reasons == ["created", "created", "resubmissions_exhausted"]
    assert len(api.submitted) == 2


def test_every_judgement_is_noted_in_the_ledger() -> None:
    api = _RecordingApi()
    ledger = MemoryLedger()
    pipeline = _pipeline(api, ledger=ledger)

    pipeline.run([_alert("da1", DEVICES[:1])], dry_run=True)
    pipeline.run([_alert("da2", DEVICES[:1])])
    pipeline.run([_alert("da3", DEVICES[:1])])

    entry = ledger.find(DEVICES[0], FILE_SHA1)
    assert entry is not None
    assert [(v.verdict, v.reason, v.alert_id) for v in entry.verdicts] == [
        ("skip", "dry_run", "da1_0"),
        ("submit", "created", "da2_0"),
        ("skip", "duplicate", "da3_0"),
    ]
    assert entry.alert_ids == ["da1_0", "da2_0", "da3_0"]
