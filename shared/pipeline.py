"""The pipeline: message bodies in, one outcome per target out.

Every trigger and the command line call ``Pipeline.run``; nothing here knows which
one did. Each target lives through the steps of ``shared/design.md``:

1. extract   the message body yields alerts and targets, or rejections
2. screen    cheap checks without any API call, then the ledger (duplicates)
3. qualify   device and file facts: from the alert, else the cache, else the API
4. guard     kill switch, per-file device cap, dry-run
5. submit    StopAndQuarantineFile with a comment that names the alert

A failure that concerns one target (a 404 for a file never seen on that device, a
throttled call) becomes that target's outcome; it never stops the other targets.

Limitations:
    A deferred target (throttled, API unavailable) is reported with the time to try
    again but not yet kept anywhere durable: the backlog queue that resubmits it is
    issue #6. Until then the caller must act on ``verdict == "defer"`` outcomes.
"""

from __future__ import annotations

__all__ = [
    "Message",
    "Outcome",
    "Pipeline",
    "QuarantineApi",
]

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeGuard

from opentelemetry import trace

from shared import policy, telemetry
from shared.alert_formats import extract, extract_document
from shared.comment import quarantine_comment
from shared.errors import (
    ApiAuthError,
    ApiError,
    ApiOutcomeUnknown,
    ApiResponseError,
    ApiThrottled,
)
from shared.facts_cache import FactsCache
from shared.ledger import Ledger
from shared.machine_actions import Submission
from shared.settings import QuarantineMode, Settings
from shared.targets import DeviceFacts, Extraction, FileFacts, Rejection, Target

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# How long to wait before trying again after a fault that did not say when.
_DEFAULT_DEFER = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Message:
    """One message body and where it came from."""

    body: bytes | str
    source: str
    enqueued_time: datetime | None = None


class QuarantineApi(Protocol):
    """The Defender calls the pipeline makes; ``shared.defender_api`` provides them."""

    def device_facts(self, device_id: str) -> DeviceFacts | None:
        """Facts about a device, or None when Defender does not know it."""
        ...

    def file_facts(self, sha1: str) -> FileFacts | None:
        """Signature facts about a file, or None when Defender does not know it."""
        ...

    def submit_quarantine(self, device_id: str, sha1: str, comment: str) -> Submission:
        """Call StopAndQuarantineFile for one target; "already in progress" is a
        result, not an error."""
        ...

    def alert_document(self, alert_id: str) -> Mapping[str, Any]:
        """The alert with its evidence, as the API returns it."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one target, or to one piece of input that was rejected.

    ``verdict`` is the policy's ``submit``, ``skip`` or ``defer``, or ``rejected``
    for input that named no readable target. ``reason`` is machine-readable.
    """

    verdict: str
    reason: str
    source: str
    alert_id: str | None = None
    device_id: str | None = None
    sha1: str | None = None
    evidence: str | None = None
    format: str | None = None
    position: str = ""
    detail: str = ""
    submission: str | None = None
    action_id: str | None = None
    action_status: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    facts: Mapping[str, str | int | bool | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view, as the replay endpoint and command line print it."""
        document = {
            field_.name: getattr(self, field_.name)
            for field_ in dataclasses.fields(self)
        }
        document["retry_at"] = self.retry_at.isoformat() if self.retry_at else None
        document["facts"] = dict(self.facts)
        return document


class Pipeline:
    """Judges and submits the targets of alert messages.

    Args:
        settings: the app settings; ``run`` may override the mode for one call.
        api: Defender, or None when no API is configured (facts not carried by
            the alert are then unknown, and nothing can be submitted).
        ledger: where submissions are recorded and looked up.
        facts_cache: device and file facts fetched from the API, with expiry.
        now: the clock, injectable for tests.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        api: QuarantineApi | None,
        ledger: Ledger,
        facts_cache: FactsCache,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._api = api
        self._ledger = ledger
        self._facts = facts_cache
        self._now = now

    def run(
        self, messages: Iterable[Message], *, dry_run: bool | None = None
    ) -> list[Outcome]:
        """Extract, judge and (unless dry-run) submit every target of the messages."""
        extractions = [
            (
                message.source,
                extract(message.body, source=message.source),
                message.enqueued_time,
            )
            for message in messages
        ]
        return self._run_all(extractions, dry_run=dry_run)

    def run_alert(self, alert_id: str, *, dry_run: bool | None = None) -> list[Outcome]:
        """Fetch one alert with its evidence from Defender and run it."""
        if self._api is None:
            raise ApiError("no Defender API is configured to fetch the alert from")

        source = f"alert:{alert_id}"
        document = self._api.alert_document(alert_id)
        extraction = extract_document(document, source=source)
        return self.run_extractions([(source, extraction)], dry_run=dry_run)

    def run_extractions(
        self,
        extractions: Iterable[tuple[str, Extraction]],
        *,
        dry_run: bool | None = None,
    ) -> list[Outcome]:
        """Judge and submit the targets of already-extracted messages.

        Each extraction comes with the name of the message it was read from.
        """
        return self._run_all(
            [(source, extraction, None) for source, extraction in extractions],
            dry_run=dry_run,
        )

    def _run_all(
        self,
        extractions: list[tuple[str, Extraction, datetime | None]],
        *,
        dry_run: bool | None,
    ) -> list[Outcome]:
        settings = self._settings_for(dry_run)
        run = _Run()
        outcomes: list[Outcome] = []

        with tracer.start_as_current_span(
            "pipeline.run", attributes={"messages": len(extractions)}
        ) as span:
            for source, extraction, enqueued_time in extractions:
                outcomes.extend(
                    _rejected(rejection) for rejection in extraction.rejections
                )
                for target in extraction.targets:
                    outcome = self._traced_target(target, source, settings, run)
                    self._record_delay(outcome, enqueued_time)
                    outcomes.append(outcome)
            span.set_attribute("outcomes", len(outcomes))

        return outcomes

    def _traced_target(
        self, target: Target, source: str, settings: Settings, run: _Run
    ) -> Outcome:
        """Process one target inside its own span, then log and count its outcome."""
        identity = {
            "alert_id": target.alert_id,
            "device_id": target.device_id,
            "sha1": target.sha1,
        }
        with tracer.start_as_current_span(
            "pipeline.target", attributes=identity
        ) as span:
            outcome = self._process_target(target, source, settings, run)
            span.set_attributes(_outcome_fields(outcome))
            _log_outcome(outcome)

        telemetry.record_target_outcome(
            outcome.verdict, outcome.reason, outcome.submission
        )
        return outcome

    def _record_delay(self, outcome: Outcome, enqueued_time: datetime | None) -> None:
        answered = outcome.submission is not None and outcome.submission != "failed"
        if answered and enqueued_time is not None:
            telemetry.record_submission_delay(enqueued_time, self._now())

    def _settings_for(self, dry_run: bool | None) -> Settings:
        if dry_run is None:
            return self._settings
        mode = QuarantineMode.DRY_RUN if dry_run else QuarantineMode.ENFORCE
        return dataclasses.replace(self._settings, quarantine_mode=mode)

    def _process_target(
        self, target: Target, source: str, settings: Settings, run: _Run
    ) -> Outcome:
        outcome = _OutcomeFor(target, source)

        screened = policy.screen_target(target, settings)
        if screened is not None:
            return outcome.judged(screened)

        duplicate = self._duplicate_of(target, run, outcome)
        if duplicate is not None:
            return duplicate

        try:
            device = self._device_facts(target, settings)
            file = self._file_facts(target)
        except ApiError as exc:
            return outcome.deferred(exc, self._now())

        outcome.add_facts(policy.describe_target(target, device, file))
        qualified = policy.qualify_target(target, device, file, settings)
        if qualified is not None:
            return outcome.judged(qualified)

        now = self._now()
        devices = self._ledger.devices_submitted(
            target.sha1, since=now - timedelta(hours=1)
        ) + run.would_submit_count(target.sha1)
        guarded = policy.guard_target(
            target, settings, devices_for_file_this_hour=devices
        )
        if guarded.reason is policy.Reason.DRY_RUN:
            run.would_submit(target)
        if guarded.kind is not policy.VerdictKind.SUBMIT:
            return outcome.judged(guarded)

        return self._submit(target, guarded, outcome, now)

    def _duplicate_of(
        self, target: Target, run: _Run, outcome: _OutcomeFor
    ) -> Outcome | None:
        entry = self._ledger.find(target.device_id, target.sha1)
        if entry is not None and entry.blocks_resubmission:
            return outcome.make(
                verdict="skip",
                reason=str(policy.Reason.DUPLICATE),
                detail="an action for this device and file is open or succeeded",
                action_id=entry.action_id,
                action_status=entry.action_status,
            )
        if run.already_judged(target):
            return outcome.make(
                verdict="skip",
                reason=str(policy.Reason.DUPLICATE),
                detail="the same device and file were judged earlier in this run",
            )
        return None

    def _device_facts(self, target: Target, settings: Settings) -> DeviceFacts | None:
        """The alert's device facts, completed from the cache or the API if thin."""
        known = target.device
        if self._api is None or not policy.needs_device_facts(known, settings=settings):
            return known

        fetched = self._facts.device(target.device_id, self._api.device_facts)
        return _merge_device(known, fetched)

    def _file_facts(self, target: Target) -> FileFacts | None:
        """The alert's file facts, or Defender's record when those are not enough."""
        known = target.file
        if self._api is None or not policy.needs_file_facts(known):
            return known

        fetched = self._facts.file(target.sha1, self._api.file_facts)
        return fetched if fetched is not None else known

    def _submit(
        self,
        target: Target,
        verdict: policy.Verdict,
        outcome: _OutcomeFor,
        now: datetime,
    ) -> Outcome:
        if self._api is None:
            return outcome.make(
                verdict="defer",
                reason="api_not_configured",
                detail="enforcement is on but no Defender API is configured",
                retry_at=now + _DEFAULT_DEFER,
            )

        comment = quarantine_comment(target.alert_id)
        try:
            submission = self._api.submit_quarantine(
                target.device_id, target.sha1, comment
            )
        except ApiError as exc:
            if _is_permanent(exc):
                return outcome.failed(exc, verdict)
            return outcome.deferred(exc, now)

        action = submission.action
        if action is not None and action.is_final:
            telemetry.record_machine_action_outcome(str(action.status))
        action_id = action.id if action else None
        action_status = action.raw_status if action else None
        self._ledger.record_submission(
            device_id=target.device_id,
            sha1=target.sha1,
            alert_id=target.alert_id,
            action_id=action_id,
            action_status=action_status,
            at=now,
        )
        return outcome.make(
            verdict="submit",
            reason=str(verdict.reason),
            submission=str(submission.outcome),
            action_id=action_id,
            action_status=action_status,
            facts=verdict.facts,
        )


class _OutcomeFor:
    """Builds the outcomes of one target, filling in who and where once."""

    def __init__(self, target: Target, source: str) -> None:
        self._target = target
        self._source = source
        self._facts: dict[str, str | int | bool | None] = {}

    def add_facts(self, facts: Mapping[str, str | int | bool | None]) -> None:
        """Facts every later outcome of this target carries (the rule's win)."""
        self._facts.update(facts)

    def make(self, *, verdict: str, reason: str, **details: Any) -> Outcome:
        details["facts"] = {**self._facts, **details.get("facts", {})}
        return Outcome(
            verdict=verdict,
            reason=reason,
            source=self._source,
            alert_id=self._target.alert_id,
            device_id=self._target.device_id,
            sha1=self._target.sha1,
            evidence=str(self._target.evidence),
            format=str(self._target.alert.format),
            **details,
        )

    def judged(self, verdict: policy.Verdict) -> Outcome:
        return self.make(
            verdict=str(verdict.kind),
            reason=str(verdict.reason),
            detail=verdict.detail,
            facts=verdict.facts,
        )

    def deferred(self, exc: ApiError, now: datetime) -> Outcome:
        retry_at = (
            exc.retry_at if isinstance(exc, ApiThrottled) else now + _DEFAULT_DEFER
        )
        return self.make(
            verdict="defer",
            reason=_defer_reason(exc),
            error=str(exc),
            retry_at=retry_at,
        )

    def failed(self, exc: ApiResponseError, verdict: policy.Verdict) -> Outcome:
        return self.make(
            verdict="submit",
            reason=str(verdict.reason),
            submission="failed",
            error=f"{exc.code or exc.status}: {exc.message}",
            facts=verdict.facts,
        )


class _Run:
    """What one call of the pipeline has seen, so a batch judges each target once."""

    def __init__(self) -> None:
        self._judged: set[tuple[str, str]] = set()
        self._would_submit: dict[str, set[str]] = {}

    def already_judged(self, target: Target) -> bool:
        if target.key in self._judged:
            return True
        self._judged.add(target.key)
        return False

    def would_submit(self, target: Target) -> None:
        self._would_submit.setdefault(target.sha1, set()).add(target.device_id)

    def would_submit_count(self, sha1: str) -> int:
        return len(self._would_submit.get(sha1, ()))


def _rejected(rejection: Rejection) -> Outcome:
    telemetry.record_rejected_event(rejection.reason)
    logger.warning(
        "event.rejected",
        extra={
            "source": rejection.source,
            "position": rejection.position,
            "reason": rejection.reason,
        },
    )
    return Outcome(
        verdict="rejected",
        reason=rejection.reason,
        source=rejection.source,
        position=rejection.position,
        detail=rejection.detail,
    )


def _is_permanent(exc: ApiError) -> TypeGuard[ApiResponseError]:
    """A refusal that resubmitting cannot change (400, 404); auth is not one:
    a person can fix credentials, and the target must wait for them, not be lost."""
    return (
        isinstance(exc, ApiResponseError)
        and not exc.is_retryable
        and not isinstance(exc, ApiAuthError)
    )


def _outcome_fields(outcome: Outcome) -> dict[str, str]:
    """The fields every record of a target carries; unknown ones are left out."""
    fields = {
        "alert_id": outcome.alert_id,
        "device_id": outcome.device_id,
        "sha1": outcome.sha1,
        "verdict": outcome.verdict,
        "reason": outcome.reason,
        "action_id": outcome.action_id,
        "status": outcome.action_status,
        "submission": outcome.submission,
        "retry_at": outcome.retry_at.isoformat() if outcome.retry_at else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _log_outcome(outcome: Outcome) -> None:
    """One record per target, with the same field names every time."""
    fields = _outcome_fields(outcome)

    if outcome.verdict == "defer":
        level = (
            logging.ERROR if outcome.reason == "api_auth_failed" else logging.WARNING
        )
        logger.log(level, "target.deferred", extra=fields)
    elif outcome.submission == "failed":
        logger.warning("target.submission_failed", extra=fields)
    elif outcome.verdict == "submit":
        logger.info("target.submitted", extra=fields)
    else:
        logger.info("target.skipped", extra=fields)


def _defer_reason(exc: ApiError) -> str:
    if isinstance(exc, ApiThrottled):
        return "api_throttled"
    if isinstance(exc, ApiAuthError):
        return "api_auth_failed"
    if isinstance(exc, ApiOutcomeUnknown):
        return "api_outcome_unknown"
    return "api_unavailable"


def _merge_device(
    known: DeviceFacts | None, fetched: DeviceFacts | None
) -> DeviceFacts | None:
    """The API's current facts, with the alert's filling what the API left empty."""
    if fetched is None or known is None:
        return fetched or known

    values = {
        field_.name: getattr(fetched, field_.name)
        if getattr(fetched, field_.name) not in (None, ())
        else getattr(known, field_.name)
        for field_ in dataclasses.fields(DeviceFacts)
    }
    return DeviceFacts(**values)
