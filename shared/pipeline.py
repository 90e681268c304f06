"""The pipeline: message bodies in, one outcome per target out.

Every trigger and the command line call ``Pipeline.run``; nothing here knows which
one did. Each target lives through the steps of ``shared/design.md``:

1. extract   the message body yields alerts and targets, or rejections
2. screen    cheap checks without any API call, then the ledger (duplicates)
3. qualify   device and file facts: from the alert, else the cache, else the API
4. guard     kill switch, per-file device cap, dry-run
5. submit    claim the target in the ledger, call StopAndQuarantineFile with a
             comment that names the alert, record the machine action

A failure that concerns one target (a 404 for a file never seen on that device, a
throttled call) becomes that target's outcome; it never stops the other targets.
A target that cannot be finished now (no API budget, a 429, a passing fault,
another instance submitting it) is put on the backlog before ``run`` returns, with
the time to try again; the backlog's trigger brings it back through
``run_deferred``. Only a fault of the state itself (storage unreachable) raises:
the trigger's retry policy then holds the input until storage answers.

Every judgement is noted in the ledger, so a target's history (verdicts, alerts,
machine action) is one entity, whichever instance judged it.
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
from shared.backlog import Backlog, DeferredTarget, PoisonRecord, is_fault_deferral
from shared.comment import quarantine_comment
from shared.errors import (
    ApiAuthError,
    ApiBudgetExhausted,
    ApiError,
    ApiOutcomeUnknown,
    ApiResponseError,
    ApiThrottled,
)
from shared.facts_cache import FactsCache
from shared.ledger import (
    Claim,
    ClaimRefusal,
    Ledger,
    LedgerConflictError,
    LedgerEntityError,
)
from shared.machine_actions import (
    MachineAction,
    MachineActionStatus,
    Submission,
    SubmissionOutcome,
)
from shared.settings import QuarantineMode, Settings
from shared.targets import DeviceFacts, Extraction, FileFacts, Rejection, Target

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# How long to wait before trying again after a fault that did not say when.
_DEFAULT_DEFER = timedelta(minutes=1)
# Other instances were writing the same entry; they are done within seconds.
_CONFLICT_DEFER = timedelta(seconds=15)


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

    def find_submission(
        self, device_id: str, sha1: str, since: datetime
    ) -> Submission | None:
        """The StopAndQuarantineFile action for this target created since
        ``since``, if Defender has one (a submission whose answer was lost)."""
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
    backlog: str | None = None
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
        ledger: where targets, claims and machine actions are recorded.
        facts_cache: device and file facts fetched from the API, with expiry.
        backlog: where targets that cannot be finished now wait.
        now: the clock, injectable for tests.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        api: QuarantineApi | None,
        ledger: Ledger,
        facts_cache: FactsCache,
        backlog: Backlog,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._api = api
        self._ledger = ledger
        self._facts = facts_cache
        self._backlog = backlog
        self._now = now

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def backlog(self) -> Backlog:
        return self._backlog

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

    def run_deferred(self, item: DeferredTarget) -> Outcome:
        """Judge a target from the backlog again, with today's settings and facts.

        Nothing is carried over from its first judgement but its attempts: the
        kill switch, exclusions and the device cap apply as they stand now.
        """
        settings = self._settings
        with tracer.start_as_current_span(
            "pipeline.deferred", attributes={"attempts": item.attempts}
        ):
            return self._traced_target(
                item.target, item.source, settings, _Run(), prior=item
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
        self,
        target: Target,
        source: str,
        settings: Settings,
        run: _Run,
        *,
        prior: DeferredTarget | None = None,
    ) -> Outcome:
        """Process one target inside its own span; note, keep, log and count it."""
        identity = {
            "alert_id": target.alert_id,
            "device_id": target.device_id,
            "sha1": target.sha1,
        }
        with tracer.start_as_current_span(
            "pipeline.target", attributes=identity
        ) as span:
            try:
                outcome = self._process_target(target, source, settings, run)
            except LedgerEntityError as exc:
                # One unreadable entry must not hold every other target back; it
                # waits on the backlog, and in the poison queue if it stays so.
                outcome = _OutcomeFor(target, source).make(
                    verdict="defer",
                    reason="ledger_unreadable",
                    error=str(exc),
                    retry_at=self._now() + _DEFAULT_DEFER,
                )
            if outcome.verdict == "defer":
                outcome = self._keep_deferred(target, outcome, prior)
            if outcome.reason != "ledger_unreadable":
                self._note_verdict(target, outcome)
            span.set_attributes(_outcome_fields(outcome))
            _log_outcome(outcome)

        telemetry.record_target_outcome(
            outcome.verdict, outcome.reason, outcome.submission
        )
        return outcome

    def _keep_deferred(
        self, target: Target, outcome: Outcome, prior: DeferredTarget | None
    ) -> Outcome:
        """Put a deferred target on the backlog, or set it aside when it has
        failed too often. A backlog that cannot take it raises: see the module."""
        now = self._now()
        attempts = prior.attempts if prior else 0
        if is_fault_deferral(outcome.reason):
            attempts += 1

        if attempts > self._settings.backlog_max_attempts:
            item = DeferredTarget(
                target=target,
                reason=outcome.reason,
                retry_at=outcome.retry_at or now,
                attempts=attempts,
                first_deferred_at=prior.first_deferred_at if prior else now,
                source=outcome.source,
            )
            self._backlog.poison(
                PoisonRecord(
                    reason=f"attempts_exhausted: {attempts} tries, last "
                    f"{outcome.reason}: {outcome.error or outcome.detail}",
                    body=item.to_message(),
                    poisoned_at=now,
                )
            )
            return dataclasses.replace(outcome, backlog="poisoned")

        self._backlog.defer(
            DeferredTarget(
                target=target,
                reason=outcome.reason,
                retry_at=outcome.retry_at or now + _DEFAULT_DEFER,
                attempts=attempts,
                first_deferred_at=prior.first_deferred_at if prior else now,
                source=outcome.source,
            )
        )
        return dataclasses.replace(outcome, backlog="queued")

    def _note_verdict(self, target: Target, outcome: Outcome) -> None:
        self._ledger.record_verdict(
            device_id=target.device_id,
            sha1=target.sha1,
            alert_id=target.alert_id,
            verdict=outcome.verdict,
            reason=outcome.submission or outcome.reason,
            at=self._now(),
        )

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

        return self._submit(target, guarded, outcome, settings)

    def _duplicate_of(
        self, target: Target, run: _Run, outcome: _OutcomeFor
    ) -> Outcome | None:
        entry = self._ledger.find(target.device_id, target.sha1)
        if entry is not None and entry.blocks_resubmission:
            return outcome.duplicate(entry.action_id, entry.action_status)
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
        settings: Settings,
    ) -> Outcome:
        now = self._now()
        if self._api is None:
            return outcome.make(
                verdict="defer",
                reason="api_not_configured",
                detail="enforcement is on but no Defender API is configured",
                retry_at=now + _DEFAULT_DEFER,
            )

        try:
            claim = self._ledger.claim(
                device_id=target.device_id,
                sha1=target.sha1,
                alert_id=target.alert_id,
                at=now,
                max_submissions=settings.max_submissions_per_target,
            )
        except LedgerConflictError as exc:
            return outcome.make(
                verdict="defer",
                reason="ledger_conflict",
                error=str(exc),
                retry_at=now + _CONFLICT_DEFER,
            )
        if not claim.granted:
            return outcome.refused_claim(claim)

        return self._submit_claimed(target, claim, verdict, outcome, self._api)

    def _submit_claimed(
        self,
        target: Target,
        claim: Claim,
        verdict: policy.Verdict,
        outcome: _OutcomeFor,
        api: QuarantineApi,
    ) -> Outcome:
        """Submit under a granted claim; every path ends the claim or records."""
        try:
            submission = self._recovered_submission(target, claim, api)
            if submission is None:
                submission = api.submit_quarantine(
                    target.device_id, target.sha1, quarantine_comment(target.alert_id)
                )
        except ApiError as exc:
            now = self._now()
            if _is_permanent(exc):
                self._ledger.record_refusal(claim, error=_describe(exc), at=now)
                return outcome.failed(exc, verdict)
            self._ledger.release(
                claim, maybe_sent=isinstance(exc, ApiOutcomeUnknown), at=now
            )
            return outcome.deferred(exc, now)

        action = submission.action
        if action is not None and action.is_final:
            telemetry.record_machine_action_outcome(str(action.status))
        action_id = action.id if action else None
        action_status = _status_name(action) if action else None
        self._ledger.record_submission(
            claim, action_id=action_id, action_status=action_status, at=self._now()
        )
        return outcome.make(
            verdict="submit",
            reason=str(verdict.reason),
            submission=str(submission.outcome),
            action_id=action_id,
            action_status=action_status,
            facts=verdict.facts,
        )

    def _recovered_submission(
        self, target: Target, claim: Claim, api: QuarantineApi
    ) -> Submission | None:
        """The action an earlier holder of this target created, if it got that far.

        A claim left by an instance that died mid-submission says since when to
        look; the action found is recorded instead of submitting again.
        """
        if claim.recover_since is None:
            return None

        found = api.find_submission(target.device_id, target.sha1, claim.recover_since)
        if found is not None:
            logger.info(
                "target.submission_recovered",
                extra={
                    "alert_id": target.alert_id,
                    "device_id": target.device_id,
                    "sha1": target.sha1,
                    "action_id": found.action.id if found.action else None,
                },
            )
            return Submission(SubmissionOutcome.RECOVERED_AFTER_UNKNOWN, found.action)
        return None


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

    def duplicate(self, action_id: str | None, action_status: str | None) -> Outcome:
        return self.make(
            verdict="skip",
            reason=str(policy.Reason.DUPLICATE),
            detail="an action for this device and file is open or succeeded",
            action_id=action_id,
            action_status=action_status,
        )

    def refused_claim(self, claim: Claim) -> Outcome:
        entry = claim.entry
        if claim.refusal is ClaimRefusal.CLAIMED_ELSEWHERE:
            return self.make(
                verdict="defer",
                reason=str(claim.refusal),
                detail="another instance is submitting this device and file",
                retry_at=claim.retry_at,
            )
        if claim.refusal is ClaimRefusal.DUPLICATE:
            return self.duplicate(
                entry.action_id if entry else None,
                entry.action_status if entry else None,
            )
        return self.make(
            verdict="skip",
            reason=str(claim.refusal),
            detail=f"submitted {entry.submissions if entry else '?'} times already; "
            f"last status {entry.action_status if entry else '?'}",
            action_id=entry.action_id if entry else None,
            action_status=entry.action_status if entry else None,
        )

    def deferred(self, exc: ApiError, now: datetime) -> Outcome:
        retry_at = (
            exc.retry_at
            if isinstance(exc, ApiThrottled | ApiBudgetExhausted)
            else now + _DEFAULT_DEFER
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
            error=_describe(exc),
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
        "backlog": outcome.backlog,
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


def _status_name(action: MachineAction) -> str:
    """The canonical name of a known status ("Cancelled" for "Canceled"), which
    the ledger and the tracker compare; an unknown one as Defender spelled it."""
    if action.status is MachineActionStatus.UNKNOWN:
        return action.raw_status
    return str(action.status)


def _describe(exc: ApiResponseError) -> str:
    return f"{exc.code or exc.status}: {exc.message}"


def _defer_reason(exc: ApiError) -> str:
    if isinstance(exc, ApiBudgetExhausted):
        return "api_budget_exhausted"
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
